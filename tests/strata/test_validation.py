"""The validation safeguard of `strata.fit` (keep the best-on-validation parameters, reject a step
whose validation loss jumps or whose gradient is not finite, stop early) against closed forms and
a hand-written reference loop, and `validation_split` (held-out labelled nodes, disjoint from the
training labels, never a test node)."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import jaxstat.strata as st


TARGET = jnp.array([0.5, -1.0, 2.0])
W0 = jnp.array([1.0, 2.0, 0.0])
STEPS, BAD = 12, 5


def quadratic(w):
    return jnp.sum((w - TARGET) ** 2)


def planted(scale):
    """A training loss whose step `BAD` (identified by its subkey) has its gradient multiplied by
    `scale`; every other step is `quadratic`."""
    bad_key = jr.key_data(jr.split(jr.key(7), STEPS)[BAD])

    def loss(w, key):
        is_bad = jnp.all(jr.key_data(key) == bad_key)
        return jnp.where(is_bad, scale, 1.0) * quadratic(w)

    return loss


def reference(loss, tx, reject):
    """The rule by hand: an update is kept unless `reject(v_new, v_cur)`; a rejected one leaves
    parameters and optimiser state as they were; the best-on-validation parameters are returned."""
    w, state = W0, tx.init(W0)
    v_cur = quadratic(w)
    best, v_best = w, v_cur
    accepted = []
    for k in jr.split(jr.key(7), STEPS):
        g = jax.grad(loss)(w, k)
        u, new_state = tx.update(g, state, w)
        new_w = optax.apply_updates(w, u)
        v_new = quadratic(new_w)
        ok = bool(jnp.isfinite(v_new)) and not reject(v_new, v_cur)
        accepted.append(ok)
        if ok:
            w, state, v_cur = new_w, new_state, v_new
            if v_new < v_best:
                best, v_best = w, v_new
    return best, np.array(accepted)


def test_a_ruinous_step_is_rejected_with_the_optimiser_state():
    """One step with a 100x gradient throws heavy-ball SGD far off: unguarded, the run ends far
    from the minimum; with `max_increase = 0.5` that step is rejected, momentum included, and the
    run equals the reference loop that skips it."""
    loss = planted(100.0)
    tx = optax.sgd(0.05, momentum=0.5)
    plain = st.fit(loss, W0, tx, STEPS, key=jr.key(7))
    assert quadratic(plain.model) > 5 * quadratic(W0)  # the planted step ruins the run
    guarded = st.fit(
        loss, W0, tx, STEPS, key=jr.key(7), validation=st.Validation(quadratic, max_increase=0.5)
    )
    best, accepted = reference(loss, tx, lambda v, v_cur: v > 1.5 * v_cur)
    expected = np.ones(STEPS, bool)
    expected[BAD] = False
    np.testing.assert_array_equal(accepted, expected)
    np.testing.assert_array_equal(guarded.accepted, expected)
    np.testing.assert_allclose(guarded.model, best, rtol=1e-12)
    assert quadratic(guarded.model) < 0.05 * quadratic(W0)
    assert int(guarded.best_step) == STEPS and int(guarded.steps_run) == STEPS
    # The validation losses recorded are those of the proposed updates.
    assert float(guarded.validation_losses[BAD]) > 10 * quadratic(W0)
    assert float(guarded.validation_losses[-1]) == pytest.approx(float(quadratic(best)), rel=1e-12)


def test_keep_best_returns_the_parameters_before_the_ruinous_step():
    """Without rejection every finite step is kept, but the returned model is the one with the
    lowest validation loss: the iterate after `BAD` updates, i.e. plain SGD run for `BAD` steps,
    with the optimiser state that goes with it."""
    loss = planted(100.0)
    tx = optax.sgd(0.05, momentum=0.5)
    out = st.fit(loss, W0, tx, STEPS, key=jr.key(7), validation=st.Validation(quadratic))
    assert bool(jnp.all(out.accepted))
    w, state = W0, tx.init(W0)
    for k in jr.split(jr.key(7), STEPS)[:BAD]:
        u, state = tx.update(jax.grad(loss)(w, k), state, w)
        w = optax.apply_updates(w, u)
    assert int(out.best_step) == BAD
    np.testing.assert_allclose(out.model, w, rtol=1e-12)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), out.opt_state, state)
    np.testing.assert_allclose(
        out.validation_losses[:BAD], [quadratic(x) for x in _sgd_path(loss, tx)], rtol=1e-12
    )


def _sgd_path(loss, tx):
    w, state, path = W0, tx.init(W0), []
    for k in jr.split(jr.key(7), STEPS)[:BAD]:
        u, state = tx.update(jax.grad(loss)(w, k), state, w)
        w = optax.apply_updates(w, u)
        path.append(w)
    return path


def test_early_stopping_closed_form():
    """Gradient descent on `(w - 2)^2` from 0 with rate 0.1 gives `w_k = 2 (1 - 0.8^k)`; the
    validation loss `(w - 1)^2` is least at `k = 3` (`0.8^3` is nearest 1/2). With patience 4 the
    run stops after update 7 (updates 4..7 bring no new best) and returns `w_3`."""
    out = st.fit(
        lambda w: jnp.sum((w - 2.0) ** 2),
        jnp.zeros(1),
        optax.sgd(0.1),
        20,
        validation=st.Validation(lambda w: jnp.sum((w - 1.0) ** 2), patience=4),
    )
    assert int(out.best_step) == 3 and int(out.steps_run) == 7
    np.testing.assert_allclose(out.model, [2 * (1 - 0.8**3)], rtol=1e-12)
    k = np.arange(7)
    np.testing.assert_allclose(out.losses[:7], 4 * 0.8 ** (2 * k), rtol=1e-12)
    np.testing.assert_allclose(out.validation_losses[:7], (1 - 2 * 0.8 ** (k + 1)) ** 2, rtol=1e-12)
    assert bool(jnp.all(jnp.isnan(out.losses[7:]))) and not bool(jnp.any(out.accepted[7:]))


def test_a_non_finite_gradient_is_skipped_not_raised():
    """A NaN gradient at one step: the strata chain raises without validation (it would leave the
    orthant); with validation that step is rejected and the natural-gradient run goes on."""
    loss = planted(jnp.nan)
    tx = st.natural_gradient(0.1)
    w0 = jnp.array([1.0, 2.0, 0.5])
    with pytest.raises(Exception, match="non-finite update"):
        jax.block_until_ready(st.fit(loss, w0, tx, STEPS, key=jr.key(7)).model)
    out = st.fit(loss, w0, tx, STEPS, key=jr.key(7), validation=st.Validation(quadratic))
    assert not bool(out.accepted[BAD]) and int(jnp.sum(out.accepted)) == STEPS - 1
    assert bool(jnp.isinf(out.validation_losses[BAD]))
    assert bool(jnp.all(jnp.isfinite(out.model))) and bool(jnp.all(out.model >= 0))
    assert int(st.stratum(out.opt_state).num_alive) == int(jnp.sum(out.model > 0))


def test_validation_argument_errors():
    with pytest.raises(ValueError, match="patience"):
        st.Validation(quadratic, patience=0)
    with pytest.raises(ValueError, match="patience"):
        st.Validation(quadratic, patience=True)
    with pytest.raises(ValueError, match="max_increase"):
        st.Validation(quadratic, max_increase=-0.1)
    with pytest.raises(TypeError, match="loss"):  # ours, or jaxtyping's in the test suite
        st.Validation(1.0)
    with pytest.raises(TypeError, match="Validation"):
        st.fit(quadratic, W0, optax.sgd(0.1), 3, validation=quadratic)


def test_validation_split():
    """Held-out nodes are labelled, disjoint from the training nodes, and together they are the
    labelled nodes; per class `round(fraction m)` are held out, each class keeps a training
    label."""
    rng = np.random.default_rng(0)
    n = 300
    classes = rng.integers(0, 3, n)
    labelled = np.zeros(n, bool)
    labelled[rng.choice(n, 60, replace=False)] = True
    train, val = st.validation_split(labelled, 0.25, key=jr.key(0), classes=classes)
    assert not np.any(train & val)
    np.testing.assert_array_equal(train | val, labelled)  # no unlabelled (test) node in either
    for c in range(3):
        m = np.sum(labelled & (classes == c))
        assert np.sum(val & (classes == c)) == round(0.25 * m)
        assert np.sum(train & (classes == c)) >= 1
    # Another key, another split; unstratified: round(fraction m) in all.
    train2, _ = st.validation_split(labelled, 0.25, key=jr.key(1), classes=classes)
    assert np.any(train2 != train)
    _, val3 = st.validation_split(labelled, 0.25, key=jr.key(0))
    assert np.sum(val3) == 15 and not np.any(val3 & ~labelled)
    # Two labels in a class: one each side; fewer is an error.
    small = np.array([True, True, False, True, True])
    tr, va = st.validation_split(small, 0.1, key=jr.key(0), classes=np.array([0, 0, 1, 1, 1]))
    np.testing.assert_array_equal(tr.astype(int) + va.astype(int), small.astype(int))
    assert va[:2].sum() == 1 and va[3:].sum() == 1
    with pytest.raises(ValueError, match="at least two labels"):
        st.validation_split(small, 0.1, key=jr.key(0), classes=np.array([0, 0, 1, 1, 2]))
    with pytest.raises(ValueError, match="fraction"):
        st.validation_split(labelled, 1.0, key=jr.key(0))
    with pytest.raises(TypeError, match="labelled"):  # ours, or jaxtyping's in the test suite
        st.validation_split(labelled.astype(int), 0.2, key=jr.key(0))
    with pytest.raises((ValueError, TypeError), match="classes"):  # ours, or jaxtyping's
        st.validation_split(labelled, 0.2, key=jr.key(0), classes=classes[:10])
