"""Ansible's linear strategy, run through Mitogen when it is installed.

Mitogen keeps one Python interpreter per node alive for the whole run instead
of starting one per task over SSH; on small nodes and slow links that is most
of the time a run takes (a no-op run of the 3-node lab: 73 s -> 33 s). Without
Mitogen this is plain `linear`, so a controller that lacks it still
provisions, only slower. Both load the Jinja plugins before the first task
(33 s -> 26 s)."""

try:
    import ansible_mitogen.loaders
    import ansible_mitogen.strategy
except ImportError:  # pragma: no cover - depends on the controller
    from ansible.plugins.strategy.linear import StrategyModule as _Base
else:
    class _Base(ansible_mitogen.strategy.StrategyMixin,
                ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)):
        pass


class StrategyModule(_Base):
    def run(self, iterator, play_context):
        _load_jinja_plugins()
        return super().run(iterator, play_context)


def _load_jinja_plugins():
    """Load the filter and test plugins once, here, before the workers fork.

    Every task runs in a freshly forked worker; a plugin loaded there is
    thrown away with it, so each task that used a filter imported the filter
    modules again (a quarter of a no-op run's CPU time)."""
    from ansible.plugins.loader import filter_loader, test_loader

    for loader in (filter_loader, test_loader):
        list(loader.all())  # a generator: loading happens as it is consumed
