"""The console: browser sessions (tokens stored hashed), each run's console.log bytes
(append-only, accepted once per byte range like metrics), and an index for sorting runs by
start time.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("key_id", sa.Integer, sa.ForeignKey("api_keys.id"), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("used_at", sa.Float, nullable=False))
    op.create_table(
        "console_bytes",
        sa.Column("run_id", sa.String(36), sa.ForeignKey("runs.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("offset", sa.BigInteger, primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("console_length", sa.BigInteger, nullable=False,
                                   server_default="0"))
    op.create_index("runs_folder_start", "runs", ["folder", "start_timestamp"])


def downgrade() -> None:
    op.drop_index("runs_folder_start", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("console_length")
    op.drop_table("console_bytes")
    op.drop_table("sessions")
