-- mesh:render-per project
-- The project's CI user. TYPE = SERVICE users cannot log in interactively and authenticate with
-- a key pair only. Set the public key once the pair exists (the private key goes to CI secrets):
--   ALTER USER <user> SET RSA_PUBLIC_KEY = '<base64 body of the .pub file>';
USE ROLE SECURITYADMIN;

CREATE USER IF NOT EXISTS {{ user }}
  TYPE = SERVICE
  DEFAULT_ROLE = {{ role }}
  DEFAULT_WAREHOUSE = {{ warehouse }}
  DEFAULT_NAMESPACE = {{ database }}
  DEFAULT_SECONDARY_ROLES = ()
  COMMENT = 'dbt mesh CI service user';

ALTER USER IF EXISTS {{ user }} SET
  TYPE = SERVICE
  DEFAULT_ROLE = {{ role }}
  DEFAULT_WAREHOUSE = {{ warehouse }};

GRANT ROLE {{ role }} TO USER {{ user }};
