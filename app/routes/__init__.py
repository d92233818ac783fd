"""HTTP routes: thin adapters between requests and the ranking service."""

from fastapi import APIRouter

from app.routes import admin, health, metrics, model, rank, v2

router = APIRouter()
router.include_router(rank.router)
router.include_router(model.router)
router.include_router(health.router)
router.include_router(metrics.router)
router.include_router(admin.router)
router.include_router(v2.router)
