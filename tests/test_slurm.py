"""The profiles (profiles/slurm, workflow/profiles/default): resource requests, conda and account
(dry runs) and real runs on a SLURM cluster.

The `slurm`-marked tests start a real single-node cluster (tests/slurm/setup_cluster.sh: munge,
slurmctld, slurmd from apt; needs root, skipped elsewhere) and run, at the same time:

- the paper's workflow on config/test.yaml (trainings lengthened to PREEMPT_EPOCHS epochs)
  through `snakemake --profile profiles/slurm`, one training being preempted (requeued) half-way;
- tests/slurm/Snakefile, whose jobs fail once or always, for the profile's retries and reports.

The profile runs unchanged: the test cluster's partition comes from $EMBEDSEG_SLURM_PARTITION like
any cluster's, and CLUSTER_OPTIONS only adapt the status queries to a cluster without accounting.
Both profiles turn conda on, so every run here has the conda stub of tests/conda_stub.py on PATH
(the SLURM jobs inherit it with the rest of the environment).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
import yte
from conda_stub import install_conda_stub

from embedseg.core.metrics import EVALUATION_THRESHOLDS

REPO = Path(__file__).resolve().parents[1]
SLURM_PROFILE = REPO / "profiles" / "slurm"
WORKFLOW = REPO / "workflow" / "Snakefile"
FAILURES_WORKFLOW = REPO / "tests" / "slurm" / "Snakefile"
CLUSTER_DIR = Path(os.environ.get("EMBEDSEG_SLURM_DIR", "/tmp/embedseg-slurm"))
GPU_RULES = {"train", "predict", "baseline_train", "baseline_predict"}
# No accounting on the test cluster, so job states come from squeue (its MinJobAge keeps
# finished jobs listed); a short first status wait keeps the runs quick.
CLUSTER_OPTIONS = [
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "2",
    "--latency-wait",
    "5",
]
PREEMPT_EPOCHS = 16
PREEMPTED_MODEL = "results/test/models/synthetic-nuclei/embedseg-medoid/seed1"
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")
RUN_TIMEOUT_S = 480


@dataclass
class Run:
    """A finished Snakemake run: its working directory, exit status and printed output."""

    workdir: Path
    returncode: int
    output: str


def workflow_dir(path: Path) -> Path:
    """A working directory for the paper's workflow: it reads config/ relative to it."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config").symlink_to(REPO / "config")
    return path


def snakemake_command(workdir: Path, snakefile: Path, profile: Path | None, *args: str) -> list[str]:
    """Snakemake on `snakefile` in `workdir`; `profile` None: only the workflow's default profile."""
    profile_args = ["--profile", str(profile)] if profile else []
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(snakefile),
        "--directory",
        str(workdir),
        *profile_args,
        *args,
    ]


def cluster_env(stub_dir: Path, **settings: str) -> dict[str, str]:
    """This process's environment with the conda stub (written to `stub_dir` if not there yet)
    and exactly the given EMBEDSEG_SLURM_* profile settings."""
    env = os.environ | {"PATH": f"{stub_dir}{os.pathsep}{os.environ['PATH']}"}
    if not (stub_dir / "conda").exists():
        env = install_conda_stub(stub_dir)
    env = {name: value for name, value in env.items() if not name.startswith("EMBEDSEG_SLURM_")}
    return env | {f"EMBEDSEG_SLURM_{name.upper()}": value for name, value in settings.items()}


def local_jobs(output: str) -> list[str]:
    """Rules of the jobs a run executed where Snakemake runs (`localrule X:` blocks)."""
    return re.findall(r"^localrule (\w+):", output, re.MULTILINE)


def job_resources(output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job a (dry) run prints, from its 'rule X:' ... 'resources:' lines."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) \w+:)", output):
        rule = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):", block)
        resources = re.search(r"^\s+resources: (.*)$", block, re.MULTILINE)
        if rule and resources:
            pairs = (item.split("=", 1) for item in resources[1].split(", "))
            jobs.append((rule[1], dict(pairs)))
    return jobs


def submitted_jobs(output: str) -> dict[str, tuple[str, Path]]:
    """SLURM job id -> (rule, SLURM log) of every sbatch submission in Snakemake's output."""
    return {job_id: (re.search(r"/rule_(\w+)/", log)[1], Path(log)) for job_id, log in SUBMITTED.findall(output)}


def scontrol_job(job_id: str) -> str:
    return subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True).stdout


def start_on_cluster(workdir: Path, snakefile: Path, *args: str) -> subprocess.Popen:
    """Snakemake under profiles/slurm on the test cluster (partition `debug`), printing to
    workdir/snakemake.out."""
    command = snakemake_command(workdir, snakefile, SLURM_PROFILE, *CLUSTER_OPTIONS, *args)
    with (workdir / "snakemake.out").open("w") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=cluster_env(workdir / "conda-stub", partition="debug")
        )


def finish(process: subprocess.Popen, workdir: Path) -> Run:
    try:
        process.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.terminate()
        process.wait(timeout=60)
    return Run(workdir, process.returncode, (workdir / "snakemake.out").read_text())


# --- profile resources (dry runs, no cluster) ---------------------------------------------------


def dry_run(workdir: Path, profile: Path | None, config: str, **settings: str) -> subprocess.CompletedProcess:
    """A dry run of config/`config` under `profile` (None: the workflow's default profile only)."""
    command = snakemake_command(
        workflow_dir(workdir), WORKFLOW, profile, "all", "--dry-run", "--configfile", str(REPO / "config" / config)
    )
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env=cluster_env(workdir / "conda-stub", **settings)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def dry_run_jobs(workdir: Path, profile: Path | None, config: str, **settings: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job but `all` in a dry run of config/`config` under `profile`."""
    jobs = [
        (rule, resources)
        for rule, resources in job_resources(dry_run(workdir, profile, config, **settings).stdout)
        if rule != "all"
    ]
    assert {rule for rule, _ in jobs} >= GPU_RULES
    return jobs


def rendered_slurm_profile(**settings: str) -> dict:
    """profiles/slurm/config.yaml as Snakemake reads it (YTE), under the given settings."""
    saved = {name: os.environ.pop(name) for name in list(os.environ) if name.startswith("EMBEDSEG_SLURM_")}
    os.environ.update({f"EMBEDSEG_SLURM_{name.upper()}": value for name, value in settings.items()})
    try:
        with (SLURM_PROFILE / "config.yaml").open() as profile:
            return yte.process_yaml(profile)
    finally:
        for name in [name for name in os.environ if name.startswith("EMBEDSEG_SLURM_")]:
            del os.environ[name]
        os.environ.update(saved)


def test_slurm_profile_requests_gpus_for_gpu_rules_only(tmp_path: Path) -> None:
    """The paper's configuration under profiles/slurm: every train/predict/baseline job asks for
    one GPU of the configured model on the GPU partition, every other job for no GPU."""
    settings = {"account": "lab", "partition": "cpu", "gpu_partition": "gpu", "gpu_model": "a100"}
    jobs = dry_run_jobs(tmp_path, SLURM_PROFILE, "config.yaml", **settings)
    assert sum(rule == "train" for rule, _ in jobs) == 54  # 3 data sets x 2 centres x 9 seeds
    for rule, resources in jobs:
        assert resources["slurm_account"] == "lab", rule
        if rule in GPU_RULES:
            assert (resources["gpu"], resources["gpu_model"], resources["slurm_partition"]) == ("1", "a100", "gpu")
        else:
            assert "gpu" not in resources and "gpu_model" not in resources, rule
            assert resources["slurm_partition"] == "cpu", rule


def test_slurm_profile_leaves_unset_choices_to_slurm(tmp_path: Path) -> None:
    """Without EMBEDSEG_SLURM_* settings no partition, account or GPU model is asked for (the
    cluster's defaults apply); the GPU rules get their GPU even where the config says gpu: false.
    Conda is on."""
    result = dry_run(tmp_path, SLURM_PROFILE, "test.yaml")
    assert {rule for rule, _ in job_resources(result.stdout)} > GPU_RULES | {"method_predict"}
    assert re.search(r"Conda environment \S+/envs/embedseg\.yaml will be created", result.stderr + result.stdout)
    for rule, resources in job_resources(result.stdout):
        assert not {"slurm_partition", "slurm_account", "gpu_model"} & set(resources), rule
        # gpu=0: the test config's own method (methods.otsu-watershed) asks for none
        assert resources.get("gpu", "0") == ("1" if rule in GPU_RULES else "0"), rule


def test_slurm_profile_passes_no_account_unless_given() -> None:
    """No account set: the plugin is told to pass none (instead of guessing one from sacct)."""
    unset = rendered_slurm_profile()
    assert unset["software-deployment-method"] == "conda"
    assert unset["slurm-no-account"] is True and "slurm_account" not in unset["default-resources"]
    given = rendered_slurm_profile(account="lab")
    assert "slurm-no-account" not in given and given["default-resources"]["slurm_account"] == "lab"


def test_default_profile_runs_one_gpu_job_at_a_time_with_conda(tmp_path: Path) -> None:
    """No --profile: workflow/profiles/default turns conda on and offers one GPU; with the paper's
    config exactly the GPU rules take it."""
    result = dry_run(tmp_path, None, "config.yaml")
    output = result.stderr + result.stdout
    assert "Using workflow specific profile" in output
    assert "GPU jobs at once on this machine: 1 " in output
    assert re.search(r"Conda environment \S+/envs/stardist\.yaml will be created", output)
    for rule, resources in job_resources(result.stdout):
        if rule != "all":
            assert resources.get("gpu", "0") == ("1" if rule in GPU_RULES else "0"), rule


# --- a real cluster ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slurm_cluster(request: pytest.FixtureRequest) -> Path:
    """A running single-node cluster; its daemons are stopped (by PID file) after the module."""
    env = os.environ | {"EMBEDSEG_SLURM_DIR": str(CLUSTER_DIR)}
    request.addfinalizer(
        lambda: subprocess.run(["bash", str(REPO / "tests" / "slurm" / "stop_cluster.sh")], env=env, timeout=120)
    )
    setup = subprocess.run(
        ["bash", str(REPO / "tests" / "slurm" / "setup_cluster.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    if setup.returncode == 77:
        pytest.skip(setup.stderr.strip())
    assert setup.returncode == 0, f"setup_cluster.sh failed:\n{setup.stderr[-4000:]}"
    return CLUSTER_DIR


def preempt_training(process: subprocess.Popen, workdir: Path, min_epochs: int = 2) -> str:
    """Requeue the SLURM job that trains PREEMPTED_MODEL once it has finished `min_epochs`
    epochs, as a preemption on a real cluster does; returns the job id."""
    log_csv = workdir / PREEMPTED_MODEL / "log.csv"
    marker = "/rule_train/synthetic-nuclei_medoid_1/"
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not (log_csv.exists() and len(pd.read_csv(log_csv)) >= min_epochs):
        assert process.poll() is None and time.monotonic() < deadline, "the training never got going"
        time.sleep(0.2)
    output = (workdir / "snakemake.out").read_text()
    job_id = next(job for job, (_, log) in submitted_jobs(output).items() if marker in str(log))
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    # A requeued job may start again only after a fixed two minutes; let it start as soon as
    # it is pending, as it would on a cluster with a free node.
    while (
        subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True).stdout.strip()
        != "PENDING"
    ):
        assert time.monotonic() < deadline, f"requeued job {job_id} never became pending"
        time.sleep(0.2)
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)
    return job_id


@dataclass
class ClusterRuns:
    pipeline: Run
    preempted_job: str
    failures: Run


@pytest.fixture(scope="module")
def cluster_runs(slurm_cluster: Path, tmp_path_factory: pytest.TempPathFactory) -> ClusterRuns:
    """Both workflows run on the cluster at the same time (see the module docstring)."""
    failures_dir = tmp_path_factory.mktemp("failures")
    failures = start_on_cluster(failures_dir, FAILURES_WORKFLOW)

    pipeline_dir = workflow_dir(tmp_path_factory.mktemp("pipeline"))
    config = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    config["datasets"]["synthetic-nuclei"]["train"]["epochs"] = PREEMPT_EPOCHS
    config_file = pipeline_dir / "slurm-test.yaml"
    config_file.write_text(yaml.safe_dump(config))
    pipeline = start_on_cluster(pipeline_dir, WORKFLOW, "--configfile", str(config_file))
    try:
        preempted_job = preempt_training(pipeline, pipeline_dir)
    except BaseException:
        # Stopping Snakemake cancels its SLURM jobs before the cluster goes down.
        for process in (pipeline, failures):
            process.terminate()
            process.wait(timeout=60)
        raise
    return ClusterRuns(finish(pipeline, pipeline_dir), preempted_job, finish(failures, failures_dir))


@pytest.mark.slurm
def test_every_pipeline_job_ran_as_a_slurm_job(cluster_runs: ClusterRuns, slurm_cluster: Path) -> None:
    run = cluster_runs.pipeline
    assert run.returncode == 0, run.output[-6000:]
    jobs = submitted_jobs(run.output)
    steps = re.findall(r"\d+ of (\d+) steps", run.output)[-1]  # the final count: checkpoints add jobs
    assert set(local_jobs(run.output)) == {"prepare", "tables", "figures", "all"}
    assert len(jobs) == int(steps) - len(local_jobs(run.output))  # every job but the local rules
    allocated = set(re.findall(r"sched: Allocate JobId=(\d+) ", (slurm_cluster / "slurmctld.log").read_text()))
    assert set(jobs) <= allocated
    for job_id, (rule, log) in jobs.items():
        shown = scontrol_job(job_id)
        assert "JobState=COMPLETED" in shown, (rule, shown)
        assert ("TresPerJob=gres:gpu:1" in shown) == (rule in GPU_RULES), (rule, shown)
        assert log.is_file(), log
    assert {rule for rule, _ in jobs.values()} >= GPU_RULES | {"crops", "evaluate"}


@pytest.mark.slurm
def test_pipeline_outputs_are_complete(cluster_runs: ClusterRuns) -> None:
    """Snakemake finds nothing left to do, and every method has scores at the 17 thresholds."""
    run = cluster_runs.pipeline
    again = subprocess.run(
        snakemake_command(
            run.workdir, WORKFLOW, SLURM_PROFILE, "--dry-run", "--configfile", str(run.workdir / "slurm-test.yaml")
        ),
        capture_output=True,
        text=True,
        timeout=300,
        env=cluster_env(run.workdir / "conda-stub", partition="debug"),
    )
    assert "Nothing to be done" in again.stdout, again.stdout[-3000:]
    scores = sorted((run.workdir / "results" / "test" / "scores").glob("synthetic-nuclei/*/seed1.csv"))
    assert {path.parent.name for path in scores} == {
        "embedseg-medoid-tta",
        "embedseg-medoid-notta",
        "embedseg-centroid-tta",
        "embedseg-centroid-notta",
        "3class-unet",
        "otsu-watershed",  # config/test.yaml's method of one's own
    }
    for path in scores:
        table = pd.read_csv(path)
        assert list(table.columns[:6]) == ["image", "tau", "tp", "fp", "fn", "ap"] and "pq" in table.columns
        assert table["tau"].nunique() == len(EVALUATION_THRESHOLDS)  # τ = 0.10 … 0.95
    assert (run.workdir / "results" / "test" / "tables" / "table1.csv").is_file()


@pytest.mark.slurm
def test_preempted_training_resumes_from_last_pt(cluster_runs: ClusterRuns) -> None:
    """The requeued job ran again under the same id, resumed from last.pt and trained every
    epoch once."""
    run = cluster_runs.pipeline
    assert "Restarts=1" in scontrol_job(cluster_runs.preempted_job)
    train_log = run.workdir / "results/test/logs/train/synthetic-nuclei/embedseg-medoid/seed1.log"
    assert re.search(r"resuming \S+last\.pt after epoch \d+", train_log.read_text())
    epochs = pd.read_csv(run.workdir / PREEMPTED_MODEL / "log.csv")["epoch"]
    assert epochs.tolist() == list(range(PREEMPT_EPOCHS))


@pytest.mark.slurm
def test_failed_jobs_are_retried_then_reported_with_their_log(cluster_runs: ClusterRuns) -> None:
    """`retries` of the profile: a transient failure succeeds on its second job; a broken rule is
    submitted 1 + retries times, then reported with its SLURM log, which holds the error."""
    run = cluster_runs.failures
    retries = yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text())["retries"]
    assert run.returncode != 0
    jobs = submitted_jobs(run.output)
    flaky = [job for job, (rule, _) in jobs.items() if rule == "flaky"]
    broken = [job for job, (rule, _) in jobs.items() if rule == "broken"]
    assert len(flaky) == 2
    assert (run.workdir / "flaky.txt").read_text().strip() == flaky[-1]
    assert len(broken) == 1 + retries
    last_log = jobs[broken[-1]][1]
    assert re.search(rf"Error in rule broken:.*?log: {re.escape(str(last_log))}", run.output, re.DOTALL)
    assert "broken on purpose" in last_log.read_text()
    assert not (run.workdir / "broken.txt").exists()
