"""screenshots remember the page's content hash they were taken of (the daily run re-shoots a changed page)

Revision ID: 0004_screenshot_page_hash
Revises: 0003_crawl
"""
from alembic import op
import sqlalchemy as sa


revision = "0004_screenshot_page_hash"
down_revision = "0003_crawl"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("screenshots") as batch:
        batch.add_column(sa.Column("page_sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("screenshots") as batch:
        batch.drop_column("page_sha256")
