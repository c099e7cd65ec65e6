# Methods of one's own (config `methods:`): `embedseg command` fills a method's command template
# and runs it into a staging folder that becomes the declared output only when the command
# succeeded (embedseg/outputs.py); a failing command fails the job, its output is in the log.
# Predictions are scored by rule evaluate like every other method's.


COMMAND_RUN = ("{ds}", "{command}", layout.seed_dir("{seed}"))


rule method_train:
    input:
        run_data,
    output:
        directory(str(layout.model_dir(RESULTS, "{ds}", "{command}", "{seed}"))),
    log:
        str(layout.job_log(RESULTS, "method_train", *COMMAND_RUN)),
    benchmark:
        str(layout.job_benchmark(RESULTS, "method_train", *COMMAND_RUN))
    conda:
        command_env
    threads: command_resources("train", "threads")
    resources:
        mem_mb=command_resources("train", "mem_mb"),
        runtime=command_resources("train", "runtime"),
        gpu=command_gpu,
    params:
        template=command_template("train"),
        device=command_device,
    shell:
        "run-embedseg command train {params.template} --data {input:q} --out {output:q}"
        " --seed {wildcards.seed} --device {params.device:q} > {log:q} 2>&1"


rule method_predict:
    input:
        data=DATA,
        model=command_model,
    output:
        directory(str(layout.predictions_dir(RESULTS, "{ds}", "{command}", "{seed}"))),
    log:
        str(layout.job_log(RESULTS, "method_predict", *COMMAND_RUN)),
    benchmark:
        str(layout.job_benchmark(RESULTS, "method_predict", *COMMAND_RUN))
    conda:
        command_env
    threads: command_resources("predict", "threads")
    resources:
        mem_mb=command_resources("predict", "mem_mb"),
        runtime=command_resources("predict", "runtime"),
        gpu=command_gpu,
    params:
        template=command_template("predict"),
        device=command_device,
        images=lambda wildcards, input: layout.test_images(input.data),
        model=lambda wildcards, input: workflow_args.option("--model", input.model or None),
    shell:
        "run-embedseg command predict {params.template} --data {input.data:q} --images {params.images:q}"
        " {params.model} --out {output:q} --seed {wildcards.seed} --device {params.device:q} > {log:q} 2>&1"
