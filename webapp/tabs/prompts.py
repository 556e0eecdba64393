"""The Compare CLIP prompts tab: prompt sets side by side on the analysed video's faces, their
probabilities, F1 and confusion matrices against the expression annotation; saved sets are shared."""
from __future__ import annotations

from functools import partial

import gradio as gr

from core.table import EXPR, gt, output_expr, prompt_output
from webapp import plots, results
from webapp.gpu import gpu
from webapp.inputs import PROMPT_SET_NAME_RULE, InputError, format_prompt_text, parse_prompt_text
from webapp.page import Progress, bind, login, page_errors, status_box
from webapp.prompts import Prompts
from webapp.state import need
from webapp.tabs.views import AnalyseView, PageView, PromptsView, SetColumn

PROMPT_COLUMNS = 3    # prompt sets side by side


class PromptsTab:
    def __init__(self, prompts: Prompts, gpu_lane: dict, page: PageView, view: PromptsView, analyse: AnalyseView):
        self.prompts, self.ctx, self.gpu_lane = prompts, prompts.ctx, gpu_lane
        self.page, self.view, self.analyse = page, view, analyse
        self.run_comparison = gpu(duration=120)(page_errors(prompts.compare_prompts))

    # -- handlers ---------------------------------------------------------------------------------------
    def compare_prompts(self, data: dict, user, progress=gr.Progress()):
        """The PROMPT_COLUMNS (3) sets side by side; a set without a name is left out."""
        v, video = self.view, need(data[self.page.state], user)
        texts = [(data[c.name], data[c.templates], data[c.classes]) for c in v.columns]
        sets = [parse_prompt_text(*t) for t in texts if (t[0] or "").strip()]
        names = [name for name, _, _ in sets]
        if not sets:
            raise InputError("Give at least one prompt set a name.")
        if len(set(names)) != len(names):
            raise InputError("Prompt sets side by side need different names.")
        objects = [self.prompts.prompt_set_from_text(*s) for s in sets]
        table, clip = self.run_comparison(video, objects, Progress(progress, "CLIP image embeddings", "faces"))
        truth = gt(EXPR)
        confusions = [plots.confusion_figure(table[output_expr(prompt_output(n))], table[truth], n)
                      if truth in table else None for n in names]
        note = ("CLIP runs with **random weights (untrained)** here: these probabilities and F1 show how the "
                "comparison works, not what the prompts are worth." if self.prompts.clip_untrained() else "")
        return {self.page.state: video.with_clip(clip), v.prompt_note: note,
                v.prompt_probs: plots.prompt_probabilities_figure(table, names),
                v.prompt_f1: results.prompt_f1_table(table, names),
                **dict(zip(v.confusions, confusions + [None] * (PROMPT_COLUMNS - len(confusions))))}

    def save_prompt_set(self, column: SetColumn, data: dict, user) -> dict:
        ps = self.prompts.prompt_set_from_text(*parse_prompt_text(data[column.name], data[column.templates],
                                                                  data[column.classes]))
        version = self.prompts.save_prompt_set(ps, login(user))
        return {column.saved: f"Saved prompt set **{ps.name}** (version {version})."}

    def load_prompt_set(self, column: SetColumn, data: dict) -> dict:
        ps = self.ctx.prompt_set_object(data[column.start_from])
        templates, classes = format_prompt_text(list(ps.templates), {c: list(v) for c, v in ps.classes.items()})
        return {column.name: ps.name, column.templates: templates, column.classes: classes}

    def prompt_set_choices(self):
        names = self.ctx.prompt_set_names()
        return [gr.update(choices=names) for _ in range(PROMPT_COLUMNS + 1)]

    # -- page -------------------------------------------------------------------------------------------
    def wire(self, demo: gr.Blocks):
        v = self.view
        set_pickers = [self.analyse.prompt_set, *(c.start_from for c in v.columns)]
        choices = page_errors(self.prompt_set_choices)
        demo.load(choices, None, set_pickers, api_name=False)
        bind(v.compare_btn.click, self.compare_prompts,
             {self.page.state, *(f for c in v.columns for f in (c.name, c.templates, c.classes))},
             [self.page.state, v.prompt_note, v.prompt_probs, v.prompt_f1, *v.confusions], status=v.prompt_status,
             api_name="compare_prompts", **self.gpu_lane)
        for i, column in enumerate(v.columns):
            bind(column.start_from.input, partial(self.load_prompt_set, column), {column.start_from},
                 [column.name, column.templates, column.classes], status=column.saved,
                 api_name="load_prompt_set" if i == 0 else None)
            saving = bind(column.save.click, partial(self.save_prompt_set, column),
                          {column.name, column.templates, column.classes}, [column.saved], status=column.saved,
                          api_name="save_prompt_set" if i == 0 else None)
            saving.then(choices, None, set_pickers, api_name=False)


def layout(prompts: Prompts, prompt_sets: list[str]) -> PromptsView:
    with gr.Tab("Compare CLIP prompts"):
        gr.Markdown("Templates: one per line, `{}` where the class phrase goes. Classes: one line per expression, "
                    "`Happiness: happy | smiling`. Compared on the face crops of the analysed video; F1 and "
                    "confusion matrices need its expression annotation.")
        columns = []
        with gr.Row():
            for i, default in enumerate(prompt_sets[:PROMPT_COLUMNS]):
                ps = prompts.ctx.prompt_set_object(default)
                text, phrases = format_prompt_text(list(ps.templates), {k: list(v) for k, v in ps.classes.items()})
                with gr.Column():
                    start_from = gr.Dropdown(prompt_sets, value=default, allow_custom_value=True,
                                             label=f"Set {i + 1}: start from")
                    name = gr.Textbox(default, label="Name", info=f"The name uses {PROMPT_SET_NAME_RULE}.",
                                      elem_id=f"set-name-{i + 1}")
                    templates = gr.Textbox(text, label="Templates", lines=3)
                    classes = gr.Textbox(phrases, label="Classes", lines=8)
                    save = gr.Button("Save this set", elem_id=f"save-set-{i + 1}")
                    saved = status_box(f"save-status-{i + 1}")
                columns.append(SetColumn.of(locals()))
        compare_btn = gr.Button("Compare", variant="primary", elem_id="compare")
        prompt_status = status_box("prompt-status")
        prompt_note = gr.Markdown(elem_id="prompt-note")
        prompt_probs = gr.Plot(label="Per-frame probabilities", elem_id="prompt-probs")
        prompt_f1 = gr.Dataframe(headers=results.PROMPT_F1_COLUMNS, interactive=False, wrap=True,
                                 label="F1 against the annotation")
        with gr.Row():
            confusions = [gr.Plot(label=f"Confusion matrix, set {i + 1}") for i in range(PROMPT_COLUMNS)]
    return PromptsView.of(locals())
