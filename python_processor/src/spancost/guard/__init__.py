"""The budget guard: rolling 24 h budgets per domain that alert and scale Deployments down.

- `budgets`: the budgets file (YAML) → `GuardConfig`, errors naming the key;
- `policy`: pure decisions (spend, Deployments and ``now`` in; alerts and actions out);
- `kube`: the Kubernetes adapter (deployments, the scale subresource, Events);
- `alerts`: webhooks (PagerDuty Events API v2 or plain JSON) with retries, and logs;
- `run`: one guard run (read spend, decide, act, alert);
- `loop`: the loop mode (the budgets file re-read when it changes, the last good kept).

The command, ``spancost guard``, is `spancost.cli.guard`.
"""
