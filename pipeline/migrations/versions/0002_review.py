"""review decisions (audit trail), per-client allowlist, analyst accounts

Revision ID: 0002_review
Revises: 0001
Create Date: 2026-11-27 11:45:00
"""
from alembic import op
import sqlalchemy as sa


revision = "0002_review"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("finding_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("previous_status", sa.String(length=16), nullable=False),
        sa.Column("analyst", sa.String(length=100), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("decided_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["finding_id"], ["findings.id"]),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("review_decisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_review_decisions_finding_id"), ["finding_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_review_decisions_client_id"), ["client_id"], unique=False)

    op.create_table(
        "allowlist_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("added_by", sa.String(length=100), nullable=False),
        sa.Column("added_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("client_id", "kind", "value"),
    )
    with op.batch_alter_table("allowlist_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_allowlist_entries_client_id"), ["client_id"], unique=False)

    op.create_table(
        "analysts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("salt", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=128), nullable=False),
        sa.Column("kdf", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "analyst_clients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("analyst_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["analyst_id"], ["analysts.id"]),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("analyst_id", "client_id"),
    )
    with op.batch_alter_table("analyst_clients", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_analyst_clients_analyst_id"), ["analyst_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_analyst_clients_client_id"), ["client_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("analyst_clients", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_analyst_clients_client_id"))
        batch_op.drop_index(batch_op.f("ix_analyst_clients_analyst_id"))
    op.drop_table("analyst_clients")
    op.drop_table("analysts")
    with op.batch_alter_table("allowlist_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_allowlist_entries_client_id"))
    op.drop_table("allowlist_entries")
    with op.batch_alter_table("review_decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_review_decisions_client_id"))
        batch_op.drop_index(batch_op.f("ix_review_decisions_finding_id"))
    op.drop_table("review_decisions")
