"""Costs that add up to the bill: a node's cost split into pods, the transactions they
served, untraced workloads and idle (`core`), with sampled traffic counted at its
adjusted count (`sampling`). Pure: the stores keep the usage, this decides the money."""
