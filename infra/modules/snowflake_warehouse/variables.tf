variable "name" {
  description = "Warehouse name, e.g. DBT_UP_WH. Unquoted Snowflake identifier in upper case."
  type        = string

  validation {
    condition     = can(regex("^[A-Z_][A-Z0-9_$]*$", var.name))
    error_message = "name must match ^[A-Z_][A-Z0-9_$]*$ (an unquoted upper-case Snowflake identifier)."
  }
}

variable "warehouse_size" {
  description = "Warehouse size. XSMALL (1 credit per running hour) is enough for the template's projects."
  type        = string
  default     = "XSMALL"

  validation {
    condition     = contains(["XSMALL", "SMALL", "MEDIUM", "LARGE", "XLARGE"], var.warehouse_size)
    error_message = "warehouse_size must be one of XSMALL, SMALL, MEDIUM, LARGE, XLARGE."
  }
}

variable "auto_suspend_seconds" {
  description = "Seconds of inactivity before the warehouse suspends itself and stops consuming credits."
  type        = number
  default     = 60

  validation {
    condition     = var.auto_suspend_seconds >= 60 && var.auto_suspend_seconds <= 3600
    error_message = "auto_suspend_seconds must be between 60 and 3600: lower values resume too often (each resume bills a minute), higher ones burn idle credits."
  }
}

variable "monthly_credit_quota" {
  description = "Credits per month the warehouse may use before its resource monitor suspends it."
  type        = number
  default     = 20

  validation {
    condition     = var.monthly_credit_quota > 0
    error_message = "monthly_credit_quota must be positive."
  }
}

variable "notify_at_percent" {
  description = "Percentages of the credit quota at which account administrators with notifications on get an e-mail."
  type        = list(number)
  default     = [75, 90]

  validation {
    condition     = alltrue([for p in var.notify_at_percent : p > 0 && p <= 100])
    error_message = "Every notify_at_percent value must be in (0, 100]."
  }
}

variable "comment" {
  description = "Comment stored on the warehouse."
  type        = string
  default     = "dbt mesh warehouse, managed by Terraform."
}
