output "user_data" {
  description = "The #cloud-config document to pass as a droplet's user data."
  value       = "#cloud-config\n${yamlencode(local.config)}"
}

output "deploy_user" {
  description = "The account to put in DOCKER_HOST (ssh://USER@HOST)."
  value       = var.deploy_user
}
