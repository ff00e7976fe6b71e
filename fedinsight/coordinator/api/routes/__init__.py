"""One router per resource; :mod:`fedinsight.coordinator.api.main` includes them all."""
