"""The error of the attribution tools: a user can fix it (wrong run, method name, class or region)."""

from __future__ import annotations

from gradlab.errors import GradlabError


class AttributionError(GradlabError, ValueError):
    """A run, model, method name, class or region that attribution cannot work with."""
