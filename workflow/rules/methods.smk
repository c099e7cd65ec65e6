# Methods of one's own (config `methods:`): `embedseg command` fills a method's command template
# and runs it into a staging folder that becomes the declared output only when the command
# succeeded (embedseg/outputs.py); a failing command fails the job, its output is in the log.
# Predictions are scored by rule evaluate like every other method's.


rule method_train:
    input:
        run_data,
    output:
        directory(str(layout.model_dir(RESULTS, "{ds}", "{command}", "{seed}"))),
    log:
        f"{RESULTS}/logs/method_train/{{ds}}/{{command}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/method_train/{{ds}}/{{command}}/seed{{seed}}.tsv"
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
        "run-embedseg command train {params.template} --data {input} --out {output}"
        " --seed {wildcards.seed} --device {params.device} > {log} 2>&1"


rule method_predict:
    input:
        data=f"{RESULTS}/data/{{ds}}",
        model=command_model,
    output:
        directory(str(layout.predictions_dir(RESULTS, "{ds}", "{command}", "{seed}"))),
    log:
        f"{RESULTS}/logs/method_predict/{{ds}}/{{command}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/method_predict/{{ds}}/{{command}}/seed{{seed}}.tsv"
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
        model=lambda wildcards, input: optional_flag("--model", input.model or None),
    shell:
        "run-embedseg command predict {params.template} --data {input.data} --images {input.data}/test/images"
        " {params.model} --out {output} --seed {wildcards.seed} --device {params.device} > {log} 2>&1"
