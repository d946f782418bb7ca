"""The peer of `mnist pretrain`: PyTorch's example MNIST script (pytorch/examples, mnist/main.py),
written again here with its defaults, since this machine cannot fetch it: the two-conv network
with dropout, Adadelta lr 1.0 with StepLR gamma 0.7, batch 64, test batch 1000, 14 epochs, seed 1,
torchvision's datasets.MNIST with ToTensor + Normalize((0.1307,), (0.3081,)) and a DataLoader, a
test pass after every epoch. The one change: it reads the IDX files of --data (the original
downloads them). Each epoch prints one line: `epoch N test_acc A seconds S` (S since the process
started), which benchmarks/speed.py --whole reads.

    python benchmarks/peer_mnist_main.py --data ../shared/data/mnist-10k [--epochs 14]
"""

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import gzip  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn, optim  # noqa: E402
from torch.optim.lr_scheduler import StepLR  # noqa: E402
from torchvision import datasets, transforms  # noqa: E402


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(self.dropout1(x), 1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return F.log_softmax(self.fc2(x), dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--epochs", type=int, default=14)
    args = parser.parse_args()
    torch.manual_seed(1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "MNIST" / "raw"  # torchvision's layout, un-gzipped as it expects
        raw.mkdir(parents=True)
        for gz in Path(args.data).glob("*.gz"):
            with gzip.open(gz) as src, open(raw / gz.stem, "wb") as dst:
                shutil.copyfileobj(src, dst)
        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
        loader = {"batch_size": 64, "shuffle": True}
        if device.type == "cuda":
            loader.update(num_workers=1, pin_memory=True)
        train_loader = torch.utils.data.DataLoader(datasets.MNIST(tmp, train=True, transform=transform), **loader)
        test_loader = torch.utils.data.DataLoader(
            datasets.MNIST(tmp, train=False, transform=transform), batch_size=1000
        )
        model = Net().to(device)
        optimizer = optim.Adadelta(model.parameters(), lr=1.0)
        scheduler = StepLR(optimizer, step_size=1, gamma=0.7)
        for epoch in range(1, args.epochs + 1):
            model.train()
            for data, target in train_loader:
                data, target = data.to(device), target.to(device)
                optimizer.zero_grad()
                F.nll_loss(model(data), target).backward()
                optimizer.step()
            model.eval()
            correct = 0
            with torch.no_grad():
                for data, target in test_loader:
                    output = model(data.to(device))
                    correct += output.argmax(1).eq(target.to(device)).sum().item()
            accuracy = correct / len(test_loader.dataset)
            print(f"epoch {epoch} test_acc {accuracy:.4f} seconds {time.perf_counter() - STARTED:.2f}", flush=True)
            scheduler.step()


if __name__ == "__main__":
    main()
