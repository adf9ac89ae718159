"""Periodic carbon report of an enterprise (placeholder, filled below)."""

from fastapi import APIRouter

router = APIRouter()
