"""AutoL2 in a plain PyTorch loop: the two added lines are marked. Nothing else here is
l2dynamics; the data is scikit-learn's digits (offline)."""

import torch
from sklearn.datasets import load_digits

from l2dynamics import AutoL2

torch.manual_seed(0)
x, y = load_digits(return_X_y=True)
x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
sched = AutoL2(optimizer, lam0=0.1)  # (1) sets the optimizer's (coupled) weight_decay

for step in range(600):
    idx = torch.randint(0, len(x), (128,))
    if step % 10 == 0:  # measure on the batch about to be used, without the L2 term
        with torch.no_grad():
            out = model(x[idx])
            loss = torch.nn.functional.cross_entropy(out, y[idx])
            acc = (out.argmax(1) == y[idx]).float().mean()
        sched.step(loss.item(), acc.item(), step)  # (2) λ ÷ 10 when training stalls
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
    optimizer.step()

if __name__ == "__main__":
    for event in sched.events:
        print(f"step {event['step']}: λ {event['lam_before']:g} → {event['lam_after']:g}")
