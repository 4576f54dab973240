output "hosts" {
  description = "The hosts list `deploy.py nodes` reads (`terraform output -json hosts`): managers first, then workers."
  value = concat(
    [for i, d in digitalocean_droplet.manager : {
      name           = d.name
      address        = d.ipv4_address_private
      public_address = d.ipv4_address
      role           = "manager"
      labels         = { for k, v in local.data_node_labels : k => v if i == local.data_node_index }
    }],
    [for d in digitalocean_droplet.worker : {
      name           = d.name
      address        = d.ipv4_address_private
      public_address = d.ipv4_address
      role           = "worker"
      labels         = {}
    }],
  )
}

output "docker_host" {
  description = "DOCKER_HOST for `deploy.py`: the data node's manager over SSH as the deploy user."
  value       = "ssh://${module.user_data.deploy_user}@${digitalocean_droplet.manager[local.data_node_index].ipv4_address}"
}

output "entry_address" {
  description = "The public IPv4 address the domain and *.domain point at."
  value       = digitalocean_droplet.manager[local.data_node_index].ipv4_address
}
