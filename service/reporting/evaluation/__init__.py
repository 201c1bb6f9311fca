"""Evaluation from the decision log: lift over an even split and off-policy estimates."""

from service.reporting.evaluation.estimates import EvaluationLog, Target, evaluate_log
from service.reporting.evaluation.experiment import evaluate_experiment

__all__ = ["EvaluationLog", "Target", "evaluate_experiment", "evaluate_log"]
