"""Two jobs on one output path, and jobs killed outright at a random moment (trials.py): a few
trials each here, what CI affords; scripts/adversarial_trials.py runs ten and twenty."""

import random
import time

import pytest
import trials

RNG = random.Random(time.time_ns())  # a random moment each run; the failure says which


@pytest.fixture(scope="module")
def trial_set(tmp_path_factory):
    return trials.make_set(tmp_path_factory.mktemp("trials") / "set", big=False)


@pytest.mark.parametrize("name", ["matchpair", "generateelevation", "builddataset"])
def test_two_jobs_on_one_output(name, trial_set, tmp_path):
    expected = trials.reference_outputs(name, trial_set, tmp_path)
    assert expected[0] != expected[1]  # the two jobs' results can be told apart
    delay = RNG.uniform(0.0, 1.0)
    ok, detail = trials.concurrency_trial(name, trial_set, tmp_path, expected, delay)
    assert ok, f"second job {delay:.2f} s after the first: {detail}"


@pytest.mark.parametrize("name", ["simulatepair", "matchpair", "generateelevation", "builddataset"])
def test_killed_at_a_random_moment(name, trial_set, tmp_path):
    seconds, complete = trials.duration(name, trial_set, tmp_path)
    at = RNG.uniform(0.0, seconds)
    ok, detail, _ = trials.kill_trial(name, trial_set, tmp_path, at, complete)
    assert ok, f"killed {at:.2f} s into a {seconds:.1f} s run: {detail}"
