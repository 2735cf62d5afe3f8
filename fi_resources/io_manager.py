"""The IO manager that stores every asset in the warehouse and records each materialization in DuckDB."""

from pathlib import Path

import dagster as dg
import pandas as pd

from fi_resources.resources import WarehouseResource
from fi_resources.warehouse import Artifact, StagedTable


class WarehouseIOManager(dg.ConfigurableIOManager):
    """DataFrames → Parquet per partition (+ a DuckDB view); a `StagedTable` (a partition the asset wrote in
    batches) is moved into place; Artifacts → a versioned folder + pointer row."""

    warehouse: dg.ResourceDependency[WarehouseResource]

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | StagedTable | Artifact) -> None:
        wh = self.warehouse.get()
        asset = context.asset_key.to_user_string()
        partition = context.asset_partition_key if context.has_asset_partitions else None
        artifact_path, row_count = None, None
        if isinstance(obj, StagedTable):
            expected = wh.partition_path(asset, partition)
            if obj.final_path != expected:
                raise ValueError(f"{asset}: staged for {obj.final_path}, but this output is {expected}")
            table_path, data_version, row_count = wh.publish_table(obj), obj.data_version, obj.rows
        elif isinstance(obj, Artifact):
            final, version = wh.publish_artifact(asset, Path(obj.path), obj.data_version)
            artifact_path = final
            df = pd.DataFrame([{"artifact_path": str(final), "data_version": version, **_flat(obj.info)}])
            table_path, _ = wh.write_table(asset, partition, df)
            data_version = version
        elif isinstance(obj, pd.DataFrame):
            table_path, data_version = wh.write_table(asset, partition, obj)
            row_count = len(obj)
        else:
            raise TypeError(
                f"{asset}: assets must return a DataFrame, a StagedTable or an Artifact, got {type(obj).__name__}"
            )
        code_version = (
            context.definition_metadata.get("code_version") if context.definition_metadata else None
        )
        wh.record_materialization(
            asset_key=asset,
            partition_key=partition,
            run_id=context.run_id,
            data_version=data_version,
            row_count=row_count,
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
