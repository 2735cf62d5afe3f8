"""The IO manager that stores every asset in the warehouse and records each materialization in DuckDB."""

from pathlib import Path

import dagster as dg
import pandas as pd

from fi_resources.resources import WarehouseResource
from fi_resources.warehouse import Artifact


class WarehouseIOManager(dg.ConfigurableIOManager):
    """DataFrames → Parquet per partition (+ a DuckDB view); Artifacts → a versioned folder + pointer row."""

    warehouse: dg.ResourceDependency[WarehouseResource]

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | Artifact) -> None:
        wh = self.warehouse.get()
        asset = context.asset_key.to_user_string()
        partition = context.asset_partition_key if context.has_asset_partitions else None
        artifact_path = None
        if isinstance(obj, Artifact):
            final, version = wh.publish_artifact(asset, Path(obj.path), obj.data_version)
            artifact_path = final
            df = pd.DataFrame([{"artifact_path": str(final), "data_version": version, **_flat(obj.info)}])
        elif isinstance(obj, pd.DataFrame):
            df = obj
        else:
            raise TypeError(
                f"{asset}: assets must return a DataFrame or an Artifact, got {type(obj).__name__}"
            )
        table_path, data_version = wh.write_table(asset, partition, df)
        if isinstance(obj, Artifact):
            data_version = df.loc[0, "data_version"]
        code_version = (
            context.definition_metadata.get("code_version") if context.definition_metadata else None
        )
        wh.record_materialization(
            asset_key=asset,
            partition_key=partition,
            run_id=context.run_id,
            data_version=data_version,
            row_count=None if artifact_path else len(df),
            table_path=table_path,
            artifact_path=artifact_path,
            code_version=code_version,
        )
        meta = {"data_version": data_version, "warehouse_table": f"main.{table_path.parent.name}"}
        if artifact_path:
            meta["artifact_path"] = dg.MetadataValue.path(str(artifact_path))
        context.add_output_metadata(meta)

    def load_input(self, context: dg.InputContext) -> pd.DataFrame | Artifact:
        wh = self.warehouse.get()
        asset = context.upstream_output.asset_key.to_user_string()
        if context.has_asset_partitions:
            df = wh.read_table(asset, list(context.asset_partition_keys))
        else:
            df = wh.read_table(asset)
        if "artifact_path" in df.columns:
            row = df.iloc[-1].to_dict()
            return Artifact(path=row.pop("artifact_path"), data_version=row.pop("data_version"), info=row)
        return df


def _flat(info: dict) -> dict:
    return {k: v for k, v in info.items() if isinstance(v, str | int | float | bool) or v is None}
