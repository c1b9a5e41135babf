"""Ansible's linear strategy, run through Mitogen when it is installed.

Mitogen keeps one Python interpreter per node alive for the whole run instead
of starting one per task over SSH; on small nodes and slow links that is most
of the time a run takes (a no-op run of the 3-node lab: 73 s -> 30 s). Without
Mitogen this is plain `linear`, so a controller that lacks it still
provisions, only slower."""

try:
    import ansible_mitogen.loaders
    import ansible_mitogen.strategy
except ImportError:  # pragma: no cover - depends on the controller
    from ansible.plugins.strategy.linear import StrategyModule  # noqa: F401
else:
    _Linear = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)

    class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _Linear):
        pass
