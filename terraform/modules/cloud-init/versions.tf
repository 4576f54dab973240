# Provider-free on purpose: it renders text only, so `init`, `validate` and `apply` run with no plugin and no network.
terraform {
  required_version = ">= 1.5"
}
