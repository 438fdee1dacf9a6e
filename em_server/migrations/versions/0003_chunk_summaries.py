"""Chunk summaries: for each chunk of points, its position in its series, the range of its
step, epoch and time values, and per-block minimum/maximum points (em_server/summaries.py),
computed here for the chunks already stored, so that downsampled views read summaries
instead of every point.

Revision ID: 0003
Revises: 0002
"""
import numpy as np
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from em_server.summaries import summarize

    op.create_table(
        "chunk_summaries",
        sa.Column("chunk_id", sa.Integer, sa.ForeignKey("chunks.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("series_id", sa.Integer, sa.ForeignKey("series.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("start", sa.BigInteger, nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("step_lo", sa.BigInteger, nullable=True),
        sa.Column("step_hi", sa.BigInteger, nullable=True),
        sa.Column("epoch_lo", sa.BigInteger, nullable=True),
        sa.Column("epoch_hi", sa.BigInteger, nullable=True),
        sa.Column("time_lo", sa.Float, nullable=True),
        sa.Column("time_hi", sa.Float, nullable=True),
        sa.Column("summary", sa.LargeBinary, nullable=False))
    conn = op.get_bind()
    chunks = sa.table("chunks", sa.column("id"), sa.column("series_id"), sa.column("steps"),
                      sa.column("epochs"), sa.column("times"), sa.column("vals"))
    sums = sa.table("chunk_summaries", *(sa.column(c) for c in (
        "chunk_id", "series_id", "start", "n", "step_lo", "step_hi", "epoch_lo", "epoch_hi",
        "time_lo", "time_hi", "summary")))
    series_ids = conn.execute(sa.select(chunks.c.series_id).distinct()).scalars().all()
    for sid in series_ids:
        pos = 0
        ids = conn.execute(sa.select(chunks.c.id).where(chunks.c.series_id == sid)
                           .order_by(chunks.c.id)).scalars().all()
        for cid in ids:  # one chunk at a time: a big database never sits in memory
            row = conn.execute(sa.select(chunks.c.steps, chunks.c.epochs, chunks.c.times,
                                         chunks.c.vals).where(chunks.c.id == cid)).one()
            cols = [np.frombuffer(b, dtype=t) for b, t in zip(
                row, ("<i8", "<i8", "<f8", "<f8"), strict=True)]
            conn.execute(sa.insert(sums).values(chunk_id=cid, series_id=sid, n=len(cols[0]),
                                                **summarize(pos, *cols)))
            pos += len(cols[0])
