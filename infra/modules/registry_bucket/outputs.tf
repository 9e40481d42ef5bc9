output "s3_bucket_id" {
  description = "Name of the registry bucket."
  value       = aws_s3_bucket.this.id
}

output "s3_bucket_arn" {
  description = "ARN of the registry bucket."
  value       = aws_s3_bucket.this.arn
}

output "s3_bucket_registry_url" {
  description = "Registry URL to put in mesh.yml (targets.<name>.registry)."
  value       = "s3://${aws_s3_bucket.this.id}/${var.registry_prefix}"
}

output "s3_bucket_logs_id" {
  description = "Name of the bucket that receives the registry's access logs."
  value       = aws_s3_bucket.logs.id
}

output "kms_key_arn" {
  description = "ARN of the KMS key that encrypts registry objects."
  value       = aws_kms_key.this.arn
}

output "kms_alias_name" {
  description = "Alias of the registry's KMS key."
  value       = aws_kms_alias.this.name
}

output "iam_policy_consumer_read_arn" {
  description = "ARN of the read-only policy every project's CI gets: latest, history and usage manifests, never state."
  value       = aws_iam_policy.consumer_read.arn
}

output "iam_policy_plan_read_arn" {
  description = "ARN of the read-only policy of the job that plans a main-branch run: what consumers read, plus every fingerprint record, never state."
  value       = aws_iam_policy.plan_read.arn
}

output "iam_policy_publisher_arns" {
  description = "ARN of each producer's publisher policy, by project name."
  value       = { for name, policy in aws_iam_policy.publisher : name => policy.arn }
}

output "iam_policy_project_state_arns" {
  description = "ARN of each project's read-write state/usage policy, by project name."
  value       = { for name, policy in aws_iam_policy.project_state : name => policy.arn }
}

output "iam_policy_state_read_arns" {
  description = "ARN of each project's read-only own-state policy (for pull requests), by project name."
  value       = { for name, policy in aws_iam_policy.state_read : name => policy.arn }
}
