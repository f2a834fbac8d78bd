"""The scoring API (``serving.app``) and its request/response schemas; logic lives in ``churnml``."""
