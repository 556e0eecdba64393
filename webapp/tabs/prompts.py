"""The Compare CLIP prompts tab: prompt sets side by side on the analysed video's faces, their
probabilities, F1 and confusion matrices against the expression annotation; saved sets are shared."""
from __future__ import annotations

import gradio as gr

from core.table import EXPR, gt, output_expr, prompt_output
from webapp import plots, results
from webapp.gpu import gpu
from webapp.inputs import InputError, format_prompt_text, parse_prompt_text
from webapp.page import Progress, bind, need, page_errors, status_box, user
from webapp.prompts import Prompts

PROMPT_COLUMNS = 3    # prompt sets side by side


class PromptsTab:
    def __init__(self, prompts: Prompts, gpu_lane: dict):
        self.prompts, self.ctx, self.gpu_lane = prompts, prompts.ctx, gpu_lane
        self.run_comparison = gpu(duration=120)(page_errors(prompts.compare_prompts))

    # -- handlers ---------------------------------------------------------------------------------------
    def compare_prompts(self, state, name_1, templates_1, classes_1, name_2, templates_2, classes_2, name_3,
                        templates_3, classes_3, request: gr.Request, profile: gr.OAuthProfile | None,
                        progress=gr.Progress()):
        """The PROMPT_COLUMNS (3) sets side by side (positional: Gradio fills request and profile only
        after positional inputs)."""
        texts = (name_1, templates_1, classes_1, name_2, templates_2, classes_2, name_3, templates_3, classes_3)
        state = need(state, request, profile)
        sets = [parse_prompt_text(*texts[i:i + 3]) for i in range(0, len(texts), 3) if (texts[i] or "").strip()]
        names = [name for name, _, _ in sets]
        if not sets:
            raise InputError("Give at least one prompt set a name.")
        if len(set(names)) != len(names):
            raise InputError("Prompt sets side by side need different names.")
        objects = [self.prompts.prompt_set_from_text(*s) for s in sets]
        table, state["clip"] = self.run_comparison(state, objects, Progress(progress, "CLIP image embeddings", "faces"))
        f1 = results.prompt_f1_table(table, names)
        truth = gt(EXPR)
        confusions = [plots.confusion_figure(table[output_expr(prompt_output(n))], table[truth], n) if truth in table else None
                      for n in names]
        confusions += [None] * (PROMPT_COLUMNS - len(confusions))
        note = ("CLIP runs with **random weights (untrained)** here: these probabilities and F1 show how the "
                "comparison works, not what the prompts are worth." if self.prompts.clip_untrained() else "")
        return (state, note, plots.prompt_probabilities_figure(table, names), f1, *confusions)

    def save_prompt_set(self, name, templates_text, classes_text, request: gr.Request,
                        profile: gr.OAuthProfile | None):
        ps = self.prompts.prompt_set_from_text(*parse_prompt_text(name, templates_text, classes_text))
        version = self.prompts.save_prompt_set(ps, user(request, profile))
        return f"Saved prompt set **{ps.name}** (version {version})."

    def load_prompt_set(self, name):
        ps = self.ctx.prompt_set_object(name)
        return (ps.name, *format_prompt_text(list(ps.templates), {c: list(v) for c, v in ps.classes.items()}))

    def prompt_set_choices(self):
        names = self.ctx.prompt_set_names()
        return tuple(gr.update(choices=names) for _ in range(PROMPT_COLUMNS + 1))

    # -- page -------------------------------------------------------------------------------------------
    def layout(self, c):
        with gr.Tab("Compare CLIP prompts"):
            gr.Markdown("Templates: one per line, `{}` where the class phrase goes. Classes: one line per "
                        "expression, `Happiness: happy | smiling`. Compared on the face crops of the analysed "
                        "video; F1 and confusion matrices need its expression annotation.")
            c.set_fields, c.set_columns = [], []
            with gr.Row():
                for i, default in enumerate(c.builtin_sets[:PROMPT_COLUMNS]):
                    ps = self.ctx.prompt_set_object(default)
                    templates, classes = format_prompt_text(list(ps.templates),
                                                            {k: list(v) for k, v in ps.classes.items()})
                    with gr.Column():
                        start_from = gr.Dropdown(c.builtin_sets, value=default, allow_custom_value=True,
                                                 label=f"Set {i + 1}: start from")
                        name = gr.Textbox(default, label="Name")
                        tpl = gr.Textbox(templates, label="Templates", lines=3)
                        cls = gr.Textbox(classes, label="Classes", lines=8)
                        save = gr.Button("Save this set", elem_id=f"save-set-{i + 1}")
                        saved = status_box(f"save-status-{i + 1}")
                    c.set_fields += [name, tpl, cls]
                    c.set_columns.append((start_from, name, tpl, cls, save, saved))
            c.compare_btn = gr.Button("Compare", variant="primary", elem_id="compare")
            c.prompt_status = status_box("prompt-status")
            c.prompt_probs = gr.Plot(label="Per-frame probabilities", elem_id="prompt-probs")
            c.prompt_f1 = gr.Dataframe(headers=results.PROMPT_F1_COLUMNS, interactive=False,
                                       label="F1 against the annotation")
            with gr.Row():
                c.confusions = [gr.Plot(label=f"Confusion matrix, set {i + 1}") for i in range(PROMPT_COLUMNS)]

    def wire(self, c, demo: gr.Blocks):
        set_pickers = [c.prompt_set, *(col[0] for col in c.set_columns)]
        choices = page_errors(self.prompt_set_choices)
        demo.load(choices, None, set_pickers, api_name=False)
        bind(c.compare_btn.click, self.compare_prompts, [c.state, *c.set_fields],
             [c.state, c.prompt_status, c.prompt_probs, c.prompt_f1, *c.confusions], status=c.prompt_status,
             api_name="compare_prompts", **self.gpu_lane)
        for i, (start_from, name, tpl, cls, save, saved) in enumerate(c.set_columns):
            bind(start_from.input, self.load_prompt_set, start_from, [name, tpl, cls], status=saved,
                 api_name="load_prompt_set" if i == 0 else None)
            bind(save.click, self.save_prompt_set, [name, tpl, cls], saved, status=saved,
                 api_name="save_prompt_set" if i == 0 else None).then(choices, None, set_pickers, api_name=False)
