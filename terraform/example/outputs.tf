output "hosts" {
  description = "For `deploy.py nodes`: terraform output -json hosts > hosts.json"
  value       = module.platform.hosts
}

output "docker_host" {
  description = "For deploy.py: export DOCKER_HOST=$(terraform output -raw docker_host)"
  value       = module.platform.docker_host
}

output "entry_address" {
  description = "Where the domain and *.domain point."
  value       = module.platform.entry_address
}
