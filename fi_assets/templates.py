"""Stage 1 assets: real user queries → silver templates (teacher) → distilled genericizer → template bank.
Thin adapters over `fi_resources.stages.templates`."""

import dagster as dg
import pandas as pd

from fi_assets.common import LM_POOL, artifact_output, progress_logger, table_output, text_logger
from fi_resources.resources import (
    InboxSettingsResource,
    ModelsResource,
    StudentSettingsResource,
    TeacherSettingsResource,
    TemplateBankSettingsResource,
    WarehouseResource,
)
from fi_resources.sources import chatterbot_questions, question_source_articles, read_user_query_files
from fi_resources.stages import templates as stage
from fi_resources.stages.students import train_student
from fi_resources.warehouse import Artifact

GROUP = "templates"


@dg.asset(group_name=GROUP, code_version="2", pool=LM_POOL, kinds={"duckdb"})
def written_questions(
    context: dg.AssetExecutionContext,
    inbox: InboxSettingsResource,
    models: ModelsResource,
    template_bank_settings: TemplateBankSettingsResource,
) -> dg.Output[pd.DataFrame]:
    """Search-style questions the teacher writes about held-out packaged Wikipedia articles (never matched or
    evaluated on): the stand-in for a search log, which no offline package ships."""
    articles = question_source_articles(
        template_bank_settings.question_articles, inbox.builtin_shards * inbox.docs_per_shard
    )
    parts = models.parts()
    writer_name = parts.model_names().get("teacher") or parts.model_names()["lm"]
    result = stage.write_questions(
        articles, parts.backend("teacher"), writer_name, progress_logger(context, "writing questions")
    )
    return table_output(result)


@dg.asset(group_name=GROUP, code_version="2", kinds={"duckdb"})
def user_queries(
    context: dg.AssetExecutionContext,
    written_questions: pd.DataFrame,
    inbox: InboxSettingsResource,
    warehouse: WarehouseResource,
) -> dg.Output[pd.DataFrame]:
    """Real user questions (chatterbot-corpus plus any query files dropped in the query inbox) and the
    written questions, each row with its source."""
    folder = inbox.folder("queries", warehouse.path)
    written = written_questions[["query", "source"]]
    user, refused = read_user_query_files(folder)
    result = stage.collect_user_queries([chatterbot_questions(), user, written])
    result.stats["inbox"] = dg.MetadataValue.path(str(folder))
    if refused:
        result.stats["refused_files"] = {r.name: r.reason for r in refused}
        for refusal in refused:
            context.log.warning(f"query inbox: not read: {refusal}")
    return table_output(result)


@dg.asset(group_name=GROUP, code_version="1", pool=LM_POOL, kinds={"duckdb"})
def silver_templates(
    context: dg.AssetExecutionContext,
    user_queries: pd.DataFrame,
    models: ModelsResource,
    teacher_settings: TeacherSettingsResource,
    template_bank_settings: TemplateBankSettingsResource,
) -> dg.Output[pd.DataFrame]:
    """The teacher genericizes a random sample of queries into templates + compatible document descriptions."""
    teacher = models.parts().teacher("genericize", teacher_settings)
    return table_output(
        stage.silver_templates(
            user_queries, teacher, template_bank_settings, progress_logger(context, "typing spans")
        )
    )


@dg.asset(group_name=GROUP, code_version="2", pool=LM_POOL, kinds={"pytorch"})
def genericizer(
    context: dg.AssetExecutionContext,
    silver_templates: pd.DataFrame,
    models: ModelsResource,
    student_settings: StudentSettingsResource,
    template_bank_settings: TemplateBankSettingsResource,
    warehouse: WarehouseResource,
) -> dg.Output[Artifact]:
    """Student genericizer: the base LM fine-tuned on the teacher's valid silver templates. With a released
    bank as the template source and no valid silver template, the base LM saved untrained (said in its
    metadata): the bank does not use it, and a teacher that wrote no template must not stop the graph."""
    examples = stage.genericizer_examples(silver_templates)
    if not examples and not template_bank_settings.released_bank_path:
        raise dg.Failure("no valid silver templates to train the genericizer on")
    parts, out = models.parts(), warehouse.get().staging_dir("genericizer")
    result = train_student(
        parts.store.fresh_lm(),
        examples,
        out,
        epochs=template_bank_settings.genericizer_epochs,
        batch_size=8,
        settings=student_settings,
        base_model=parts.model_names()["lm"],
        log=text_logger(context, "genericizer fine-tune"),
    )
    untrained = {} if examples else {"untrained": "no valid silver templates; the bank is the released one"}
    return artifact_output(out, result, untrained)


@dg.asset(group_name=GROUP, code_version="5", pool=LM_POOL, kinds={"duckdb"})
def query_templates(
    context: dg.AssetExecutionContext,
    user_queries: pd.DataFrame,
    genericizer: Artifact,
    models: ModelsResource,
    template_bank_settings: TemplateBankSettingsResource,
) -> dg.Output[pd.DataFrame]:
    """The template bank: the student genericizer run over the queries; outputs validated by the <fi> grammar.
    With `released_bank_path` set, the released FineTemplates bank read from that local copy instead (the
    queries and the genericizer are then not used)."""
    if template_bank_settings.released_bank_path:
        return table_output(stage.released_template_bank(template_bank_settings))
    student = models.parts().backend("genericizer", genericizer.path, version=genericizer.data_version)
    return table_output(
        stage.template_bank(
            user_queries,
            student,
            f"genericizer@{genericizer.data_version}",
            template_bank_settings,
            progress_logger(context, "genericizing"),
        )
    )
