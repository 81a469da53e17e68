"""The warm task worker: the HTTP server inside each Knative service."""
