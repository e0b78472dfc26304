"""The MLflow adapter: the store, runs and their tags, the registry, logged models, serving.

The only package (with the use cases above it) that talks to MLflow.
"""
