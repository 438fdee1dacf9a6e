"""PyTorch + Lightning session: integrations.torch, EMLogger for both lightning.pytorch and
pytorch_lightning, the three examples, and the multi-process tests (torchrun, mp.spawn,
Lightning ddp/ddp_spawn; gloo on CPU, 2 processes).

    python3 -m nox -s torch
"""

from __future__ import annotations

import nox

from noxsessions._common import install_em

# Resolved together on CPU (torch's local CPU wheel; unpinned torch pulls CUDA builds).
PINS = ("torch==2.13.0", "lightning==2.6.6", "pytorch-lightning==2.6.6", "omegaconf==2.4.0",
        "hypothesis")
PATHS = ("tests/integrations/torch", "tests/integrations/lightning", "tests/dist/test_torch_ddp.py",
         "tests/dist/test_lightning_ddp.py", "tests/integrations/test_contract.py")

DEFAULT: list[str] = ["torch"]


@nox.session
def torch(session: nox.Session) -> None:
    """PyTorch and Lightning (both packages): hparams, EMLogger, examples, DDP on CPU."""
    install_em(session, *PINS)
    session.run("python", "-m", "pytest", "-q", *PATHS, *session.posargs,
                env={"EM_STRICT": "1", "OMP_NUM_THREADS": "1", "EM_CONTRACT": "lightning"})
