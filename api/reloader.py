"""Hot reload: the thread that keeps the policy pool on the versions the service approved."""

from __future__ import annotations

import logging
import threading

from api.observability import set_policy_drift, set_policy_versions
from optimizer.serving import PolicyPool

log = logging.getLogger("campopt.api")


class PolicyReloader:
    """Looks for newly aliased policy versions every `interval` seconds (hot reload)."""

    def __init__(self, policies: PolicyPool, *, interval: float) -> None:
        self._policies = policies
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="policy-reload", daemon=True)
        self.first_pass = threading.Event()

    def start(self) -> PolicyReloader:
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            changed = self._policies.refresh()
            for name in changed:
                log.info(
                    "policy reloaded",
                    extra={"policy": name, "version": self._policies.loaded()[name]},
                )
            set_policy_versions(self._policies.loaded())
            set_policy_drift(self._policies.drifting())
            self.first_pass.set()
            if self._stop.wait(self._interval):
                return

    def stop(self, *, timeout: float = 30.0) -> None:
        """Stop and wait for a refresh in flight: it reads the database the container is
        about to dispose of."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)
