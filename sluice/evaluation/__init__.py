"""Pure core: metrics, scoring, figures and the promotion gate's decision.

Functions return numbers and figures; logging them is the tracking adapter's job. No MLflow.
"""
