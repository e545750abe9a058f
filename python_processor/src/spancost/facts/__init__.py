"""Facts about where spans ran: the Kubernetes node and its pods, the EC2 instance, the
ECS task. `model` reads API objects (pure); `kube` and `host` keep them current in the
background; `source` is what ``spancost.cost``'s ``node_facts`` configures."""
