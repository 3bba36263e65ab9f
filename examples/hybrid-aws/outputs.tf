output "machine_ips" {
  description = "Each machine's address, by system id."
  value       = local.machine_ips
}

output "machine_fqdns" {
  description = "Each machine's Route 53 name, by system id."
  value       = { for id, r in aws_route53_record.machine : id => r.fqdn }
}

output "ingress_dns_name" {
  description = "The load balancer's DNS name, which every machine was given."
  value       = aws_lb.ingress.dns_name
}

output "zone_id" {
  description = "The private Route 53 zone."
  value       = aws_route53_zone.site.zone_id
}

output "target_group_arn" {
  description = "The target group whose targets are the machines."
  value       = aws_lb_target_group.metal.arn
}

output "timelines" {
  description = "What each machine did while it installed, as the boot service saw it."
  value       = { for id, m in metal_machine.node : id => m.timeline }
}
