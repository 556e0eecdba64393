"""The AffectLens page: Analyse, Compare CLIP prompts, Review, Models.

`build_app(config)` builds the parts (webapp.analyses, webapp.frames, webapp.prompts, webapp.reviews,
webapp.models, all on one webapp.context.Context) and lays out one tab per module of webapp/tabs, each
wiring its buttons to named handlers (webapp.page.bind: a refused action leaves the outputs as they were
and says why beside the button); every action is also an API endpoint (api_name), so gradio_client can
drive it.
`demo` is the app for the environment's configuration and `launch(demo, config)` serves it.
"""
import webapp.gpu  # noqa: F401  first: on ZeroGPU, `spaces` comes before anything touches CUDA

import os
import shutil

import gradio as gr
from sqlalchemy.exc import SQLAlchemyError

from core.models.clip import DEFAULT_PROMPT_SETS
from webapp.analyses import Analyses
from webapp.audit import Audit
from webapp.cleanup import remove_orphan_analyses, session_middleware, start_sweeper
from webapp.config import AppConfig
from webapp.context import Context
from webapp.frames import Frames
from webapp.labels import Labels
from webapp.logins import Logins, login_middleware
from webapp.models import Models
from webapp.page import CSS, Page
from webapp.prompts import Prompts
from webapp.reviews import Reviews
from webapp.tabs import analyse, audit_queue, models as models_tab, prompts as prompts_tab, review
from webapp.tabs.analyse import EXAMPLES_DIR
from webapp.tabs.review import KEYS_JS
from webapp.tabs.views import PageView

GPU_QUEUE = "gpu"     # every event that runs models shares this queue


def build_app(config: AppConfig) -> gr.Blocks:
    """The page for a configuration (tests build one per temporary database)."""
    ctx = Context(config)
    labels, models, frames = Labels(ctx), Models(ctx), Frames(ctx)
    analyses, reviews = Analyses(ctx, models, labels), Reviews(ctx, labels)
    prompts = Prompts(analyses, frames)
    gpu_lane = dict(concurrency_id=GPU_QUEUE, concurrency_limit=config.gpu_concurrency)
    prompt_sets = list(DEFAULT_PROMPT_SETS)

    ttl = int(config.session_ttl_s)      # Gradio's own copies of uploads go as soon as our session folders
    with Page(title="AffectLens", delete_cache=(max(1, min(600, ttl // 10)), ttl), analytics_enabled=False) as demo:
        state = gr.State(None)
        with gr.Row():
            gr.Markdown("# AffectLens\nValence-arousal, expressions and action units of the face in a video "
                        "(DDAMFN + LSTM, CLIP), beside the Aff-Wild2 annotation when there is one.")
            who = gr.Markdown(elem_id="who")
            if config.oauth:
                gr.LoginButton()
        page = PageView(state, who)
        analyse_view = analyse.layout(analyses, prompt_sets, models.model_choices())
        prompts_view = prompts_tab.layout(prompts, prompt_sets)
        review_view = review.layout()
        models_view = models_tab.layout()
        analyse_tab = analyse.AnalyseTab(analyses, frames, reviews, gpu_lane, page, analyse_view, review_view)
        queue_tab = audit_queue.AuditQueueTab(Audit(ctx), analyses, frames, page, review_view.dataset_queue,
                                              review_view, analyse_tab)
        for tab in (analyse_tab, prompts_tab.PromptsTab(prompts, gpu_lane, page, prompts_view, analyse_view),
                    review.ReviewTab(reviews, analyses, frames, models, page, review_view, analyse_tab, models_view),
                    models_tab.ModelsTab(models, models_view, analyse_view, review_view.dataset_queue,
                                         queue_tab.refresh),
                    queue_tab):
            tab.wire(demo)

        def cleanup(request: gr.Request):
            """The session's files go when its browser tab closes."""
            shutil.rmtree(config.cache_dir / (request.session_hash or "no-session"), ignore_errors=True)

        demo.unload(cleanup)
    return demo


def forget_orphan_analyses(ctx: Context) -> None:
    """At start-up, the analysis folders that no stored run names go (webapp.cleanup); a database or data
    folder that cannot be read now leaves them for the next start, with one line in the log."""
    try:
        removed = remove_orphan_analyses(ctx.config.data_dir, ctx.run_folders())
    except (OSError, SQLAlchemyError) as err:
        print(f"AffectLens left the analysis folders unchecked: {' '.join(str(err).split())[:300]}", flush=True)
        return
    if removed:
        print(f"AffectLens removed {len(removed)} analysis folder(s) that no stored analysis names "
              f"(shown but not stored): {', '.join(p.name for p in removed)}", flush=True)


def launch(demo: gr.Blocks, config: AppConfig, **overrides):
    """Serve the app: a queue in which model work takes one lane (config.gpu_concurrency at a time) and
    the rest stays responsive, the upload size limit, the logins (failures slow down per client, read behind
    config.trusted_proxies proxies from their forwarded header), session folders swept once their session
    has ended, analysis folders that no stored run names removed (webapp.cleanup), and no folder served
    besides the bundled example and the files the app wrote itself. The session folders are a static path:
    Gradio serves their files where they are instead of copying them into its cache, whose deletion ages
    files from their creation."""
    demo.queue(default_concurrency_limit=8, max_size=64)
    os.environ["FORWARDED_ALLOW_IPS"] = ""    # the web server takes no forwarded address: webapp.logins decides
    print("\n".join(config.startup_log()), flush=True)
    forget_orphan_analyses(Context(config))
    gr.set_static_paths([config.cache_dir])
    start_sweeper(config.cache_dir, config.session_ttl_s)
    kwargs = dict(
        server_name=config.host, server_port=config.port, auth=Logins(config.users).check if config.users else None,
        auth_message="AffectLens: sign in; reviews are recorded under your login.",
        app_kwargs={"middleware": [*login_middleware(config.trusted_proxies),
                                   session_middleware(config.cache_dir, config.session_ttl_s)]},
        max_file_size=f"{config.max_upload_mb}mb", allowed_paths=[str(EXAMPLES_DIR)],
        blocked_paths=[str(config.affwild2_root)] if config.affwild2_root else None,
        ssr_mode=False, footer_links=["api"], css=CSS, js=KEYS_JS,
    )
    kwargs.update(overrides)
    return demo.launch(**kwargs)


CONFIG = AppConfig.from_env()
demo = build_app(CONFIG)
