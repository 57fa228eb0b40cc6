"""Evaluation, its own layer (below training, whose export gates run it; above core and data): the one-reference BOP
protocol (``one2any eval``: plan -> run -> summary -> report) and tracking over sequences (``one2any eval
--sequence``). The public API below is what promote, train_scorer, the CLI and the tools use."""
from one2any_ros.core.protocol import rotation_bin
from one2any_ros.evaluation.plan import (REFERENCE_MIN_VISIB, EvalModel, ObjectPlan, first_instances, info_family,
                                         load_eval_model, plan_dataset, plan_scene, select_reference, subsample_plans)
from one2any_ros.evaluation.report import format_report_table, plot_reliability, plot_report
from one2any_ros.evaluation.run import evaluate_dataset, run_query
from one2any_ros.evaluation.sequence import evaluate_sequences, format_sequence_report, summarize_sequences
from one2any_ros.evaluation.summary import json_safe, summarize

__all__ = ["REFERENCE_MIN_VISIB", "EvalModel", "ObjectPlan", "evaluate_dataset", "evaluate_sequences", "first_instances",
           "format_report_table", "format_sequence_report", "info_family", "json_safe", "load_eval_model",
           "plan_dataset", "plan_scene", "plot_reliability", "plot_report", "rotation_bin", "run_query",
           "select_reference", "subsample_plans", "summarize", "summarize_sequences"]
