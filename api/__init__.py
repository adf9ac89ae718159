"""HTTP API (FastAPI, versioned under /api/v1) and the web dashboard it serves."""
