"""Reruns by Dagster's rules: code versions that cover the settings and models shaping each asset, and the
stale status Dagster derives from them and from recorded data versions.

An asset's settings are the resources in its signature (`fi_resources.settings` sections and the `models`
resource), so its code version is its own version plus a hash of those resources' fingerprints: change a
setting, and exactly the assets that read it get a new code version; Dagster then marks them stale, and
their descendants once the rerun gives a new data version (every asset reports its content hash as data
version).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

import dagster as dg
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._time import get_current_datetime


def settings_hash(asset: dg.AssetsDefinition, resources: Mapping[str, object]) -> str:
    """A short hash of the fingerprints of the resources `asset` reads that have one."""
    prints = {
        key: resources[key].fingerprint()  # type: ignore[attr-defined]
        for key in sorted(asset.required_resource_keys)
        if hasattr(resources.get(key), "fingerprint")
    }
    return hashlib.sha256(json.dumps(prints, sort_keys=True, default=str).encode()).hexdigest()[:10]


def with_settings_versions(
    assets: Sequence[dg.AssetsDefinition], resources: Mapping[str, object]
) -> list[dg.AssetsDefinition]:
    """The assets with code version `<own version>+<settings hash>`."""
    out = []
    for asset in assets:
        suffix = settings_hash(asset, resources)
        out.append(
            asset.map_asset_specs(
                lambda spec, s=suffix: spec.replace_attributes(code_version=f"{spec.code_version or '0'}+{s}")
            )
        )
    return out


class StaleAssets:
    """Which (asset, partition) Dagster considers stale or missing, as the UI shows it. One instance answers
    for one moment: make a new one after materializing."""

    def __init__(self, instance: dg.DagsterInstance, assets: Sequence[dg.AssetsDefinition]):
        graph = AssetGraph.from_assets(list(assets))
        view = AssetGraphView(
            temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
            instance=instance,
            asset_graph=graph,
        )
        self._resolver = CachingStaleStatusResolver(
            instance=instance, asset_graph=graph, loading_context=view
        )

    def status(self, key: str, partition: str | None = None) -> StaleStatus:
        return self._resolver.get_status(dg.AssetKey(key), partition)

    def causes(self, key: str, partition: str | None = None) -> list[str]:
        """Why (asset, partition) is stale, in Dagster's words."""
        return [
            f"{c.key.asset_key.to_user_string()} {c.reason}"
            + (f" ({c.dependency.asset_key.to_user_string()})" if c.dependency else "")
            for c in self._resolver.get_stale_root_causes(dg.AssetKey(key), partition)
        ]

    def needs_run(self, key: str, partition: str | None = None) -> bool:
        return self.status(key, partition) in (StaleStatus.STALE, StaleStatus.MISSING)
