"""Artifacts, resumable uploads, and unique names in a folder (so that two server processes
uploading the same run at once cannot both create it).

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("runs_folder_name", "runs", ["folder", "name"], unique=True)
    op.create_index("runs_folder_alt", "runs", ["folder", "alternative_name"], unique=True)
    op.create_table(
        "artifacts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("folder", sa.String(2000), nullable=False, index=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("alternative_name", sa.String(400), nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("meta", sa.Text, nullable=False))
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False))
    op.create_index("artifacts_folder_name", "artifacts", ["folder", "name"], unique=True)
    op.create_index("artifacts_folder_alt", "artifacts", ["folder", "alternative_name"],
                    unique=True)
