"""google/autol2's λ rule transcribed line by line from its loop (jax_wideresnet_exps.py),
independent of l2dynamics: the tests of AutoL2 and of the Lightning callback compare against it."""


def released_rule(measurements, lam0, factor=10.0, delay=0.1):
    """google/autol2's loop transcribed line by line (jax_wideresnet_exps.py), independent of
    l2dynamics: the λ in force after each (loss, accuracy, step) measurement."""
    curr, idel0 = lam0, None
    train_lm, train_acc, out = [], [], []
    maxacc = minloss = None
    for lm, acc, i in measurements:
        idel0 = i if idel0 is None else idel0
        train_lm.append(lm)
        train_acc.append(acc)
        if (i > delay / curr + idel0 and len(train_lm) > 2
                and ((minloss <= train_lm[-1] and minloss <= train_lm[-2])
                     or (maxacc >= train_acc[-1] and maxacc >= train_acc[-2]))):
            curr, idel0 = curr / factor, i
        elif len(train_lm) >= 2:
            if maxacc is None:
                maxacc, minloss = train_acc[-2], train_lm[-2]
            else:
                maxacc, minloss = max(train_acc[-2], maxacc), min(train_lm[-2], minloss)
        out.append(curr)
    return out
