"""Train a small CNN on MNIST-shaped generated data and record it with em (single device).

The seed SDK's PyTorch tutorial with ``from t9k import em`` replaced by
``import em_core as em``; the images are generated (each class is a fixed random pattern
plus noise), so nothing is downloaded.

    python examples/torch_mnist.py --epochs 2 --device cpu     # or --device cuda

Records: hyperparameters (arguments, optimizer, scheduler, model size), train metrics every
``--log-every`` steps, val metrics per epoch, test metrics at the end, and the saved
state_dict as an output artifact. The run lands in ``$EM_RUN_PARENT_DIR`` (default
``.em/runs``).
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import em_core as em
from integrations.torch import torch_hparams


def make_data(n: int, seed: int) -> TensorDataset:
    """``n`` 1x28x28 images in 10 classes: a per-class pattern plus noise."""
    patterns = torch.randn(10, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = patterns[labels] + 0.8 * torch.randn(n, 1, 28, 28, generator=g)
    return TensorDataset(images, labels)


class Net(nn.Module):
    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(),
                                      nn.MaxPool2d(4))
        self.head = nn.Linear(channels * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def evaluate(model: nn.Module, loader: DataLoader, device: torch.device) -> dict[str, float]:
    model.eval()
    loss, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            out = model(x)
            loss += nn.functional.cross_entropy(out, y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
            n += len(y)
    model.train()
    return {"loss": loss / n, "accuracy": correct / n}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--train-size", type=int, default=640)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--name", default="torch_mnist")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)

    run = em.create_run(name=args.name, labels=["example", "torch"],
                        description="small CNN on generated MNIST-shaped data")
    run.hparams.update(args)

    train = DataLoader(make_data(args.train_size, 1), batch_size=args.batch_size, shuffle=True)
    val = DataLoader(make_data(200, 2), batch_size=100)
    test = DataLoader(make_data(200, 3), batch_size=100)
    model = Net().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    run.hparams.update(torch_hparams(model=model, optimizer=optimizer, scheduler=scheduler))

    step = 0
    for epoch in range(1, args.epochs + 1):
        for x, y in train:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            step += 1
            if step % args.log_every == 0:
                # The loss goes in as a 0-d tensor (on the GPU with --device cuda).
                run.log("train", {"loss": loss.detach(), "lr": scheduler.get_last_lr()[0]},
                        step=step, epoch=epoch)
        scheduler.step()
        run.log("val", evaluate(model, val, device), step=step, epoch=epoch)
    run.log("test", evaluate(model, test, device), step=step, epoch=args.epochs)

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "mnist_cnn.pt")
        torch.save(model.state_dict(), path)
        model_artifact = em.create_artifact(name="mnist_cnn", labels=["model"])
        model_artifact.add_file(path, obj_path="model/")
        run.mark_output(model_artifact)
    run.finish()
    print(f"run recorded at {run.local}")


if __name__ == "__main__":
    main()
