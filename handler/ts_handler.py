"""TorchServe adapter: read the context, call the core, map errors to per-request status codes."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from ts.metrics.dimension import Dimension
from ts.torch_handler.base_handler import BaseHandler

from handler.analysis import Analysis, Request
from handler.answers import answer
from handler.classifier import DeepfakeClassifier
from handler.clients import Clients
from handler.errors import ClientError
from handler.hardware import cpu_description
from handler.options import HandlerOptions
from handler.payload import face_mode, image_bytes, is_v2_input
from handler.roles import worker_role
from handler.store import PROBE, RecordSettings

logger = logging.getLogger(__name__)

JSON = "application/json"


def worker_device(system_properties: dict) -> torch.device:
    """``cuda:<gpu_id>`` when TorchServe assigned a GPU and CUDA is usable, else CPU."""
    gpu_id = system_properties.get("gpu_id")
    if gpu_id is not None and torch.cuda.is_available():
        return torch.device(f"cuda:{gpu_id}")
    return torch.device("cpu")


def v2_outputs(analyses: list[Analysis], bodies: list[dict], context) -> list[dict]:
    """Answers for the inputs of one KServe v2 request (the kservev2 envelope turns each into an output
    tensor holding that answer). A v2 request is one request: an error in any input sets its status."""
    failed = [a.error for a in analyses if a.error is not None]
    if failed:
        context.set_response_status(failed[0].status, failed[0].error, 0)
    return bodies


def record_metrics(metrics, analyses: list[Analysis]) -> None:
    """The service's own Prometheus counters, beside TorchServe's (config/config.properties lists them; a test
    holds the two equal): RejectedRequests{Error} per refused request by error name, FacesClassified (the faces of image answers),
    WholeImagesClassified (answers that classified the whole image: face mode off, or auto without a face),
    Verdicts{Verdict} per answer by its verdict (real | fake | uncertain), VideosAnalyzed, RecordsNotKept
    (requests whose record the store did not take) and Matches{Label} (images matched to a labelled record)."""
    if metrics is None:  # contexts without a metrics cache (unit tests)
        return
    answered = [a for a in analyses if a.open]
    lost = sum(1 for a in analyses if a.record is not None and not a.record.kept)
    if lost:
        metrics.add_counter("RecordsNotKept", lost)
    for label in sorted({a.match.label for a in answered if a.match}):
        metrics.add_counter("Matches", sum(1 for a in answered if a.match and a.match.label == label), dimensions=[Dimension("Label", label)])
    for refused in (a for a in analyses if a.error is not None):
        metrics.add_counter("RejectedRequests", 1, dimensions=[Dimension("Error", refused.error.error)])
    if answered:
        metrics.add_counter("FacesClassified", sum(a.subjects.faces for a in answered if a.subjects.media == "image"))
        metrics.add_counter("VideosAnalyzed", sum(a.subjects.media == "video" for a in answered))
        metrics.add_counter("WholeImagesClassified", sum(a.subjects.analyzed == "image" for a in answered))
        for verdict in sorted({a.outcome.final for a in answered}):
            metrics.add_counter("Verdicts", sum(a.outcome.final == verdict for a in answered), dimensions=[Dimension("Verdict", verdict)])


def is_explanation(headers: dict) -> bool:
    """TorchServe's frontend marks requests to /explanations/<model> with the header explain: True."""
    return any(str(k).lower() == "explain" and str(v) == "True" for k, v in headers.items())


def route_of(headers: dict, explain: bool, route: str, clients: Clients = Clients()) -> str:
    """The record's route: ``probe`` for a signed probe (handler/clients.py), else ``explanations`` for
    /explanations, else ``route``."""
    return PROBE if clients.probe(headers) else "explanations" if explain else route


def read_request(item: dict, headers: dict, route: str = "predictions", clients: Clients = Clients()) -> Request:
    """One TorchServe request item and its headers as the core's request record (``clients`` names who
    sent it, handler/clients.py); a client error in them becomes that request's payload (its answer)."""
    explain = is_explanation(headers)
    client, route = clients.of(headers), route_of(headers, explain, route, clients)
    try:
        mode = face_mode(item, headers)
        return Request(image_bytes(item), mode, explain, client, route)
    except ClientError as error:
        return Request(error, client=client, route=route)


class DeepfakeHandler(BaseHandler):
    """One JSON answer per request, in order; a bad request fails alone with a 4xx."""

    def initialize(self, context) -> None:
        properties = context.system_properties
        options = HandlerOptions.from_mapping(context.model_yaml_config.get("handler"))
        model = context.manifest["model"]
        # The registration's name (context.model_name), not the archive's: one archive serves as <name>
        # for images and <name>-video for videos (handler/roles.py).
        name = getattr(context, "model_name", None) or model["modelName"]
        self.role = worker_role(name, context.model_yaml_config)
        if self.role.nice:
            os.nice(self.role.nice)  # video workers leave the CPU to image workers when both are busy
        self.device = worker_device(properties)
        records = RecordSettings.from_environment()
        self.classifier = DeepfakeClassifier.from_checkpoint(
            Path(properties["model_dir"]) / options.checkpoint,
            options,
            device=self.device,
            name=model["modelName"],
            version=model.get("modelVersion", "1.0"),
            forward_batch=int(context.model_yaml_config.get("batchSize", 8)),
            video_endpoint=self.role.video_endpoint,
            records=records,
        )
        self.clients = Clients.from_environment(records.client_header)
        self.initialized = True
        runtime = self.classifier.runtime
        logger.info(
            "loaded %s version %s as %s (answers %s%s) on %s (runtime %s, precision %s%s%s, demo=%s; records %s%s; CPU %s)",
            model["modelName"],
            model.get("modelVersion"),
            name,
            {"image": "images; videos go to " + str(self.role.video_endpoint), "video": "videos", "both": "images and videos"}[self.role.kind],
            f", nice +{self.role.nice}" if self.role.nice else "",
            self.device,
            runtime.name,
            runtime.precision,
            f", asked {options.precision}: {runtime.fallback}" if runtime.fallback else "",
            f"; {runtime.chosen_by}" if runtime.chosen_by else "",
            self.classifier.identity.demo,
            "on" if self.classifier.records else "off",
            "" if self.clients.key else ", no client key: the page's users and probes are not believed",
            cpu_description(),
        )

    def handle(self, data, context) -> list[str]:
        v2 = bool(data) and all(is_v2_input(item) for item in data)
        # Under the kservev2 envelope the items are the input tensors of request 0, not requests.
        route = "v2" if v2 else "predictions"
        requests = [read_request(item, context.get_all_request_header(0 if v2 else index) or {}, route, self.clients)
                    for index, item in enumerate(data)]
        analyses = self.classifier.analyse(requests)
        bodies = [answer(analysis, self.classifier.answers) for analysis in analyses]
        logger.info("batch of %d requests, %d rejected", len(analyses), sum(not a.open for a in analyses))
        record_metrics(getattr(context, "metrics", None), analyses)
        if v2:
            return v2_outputs(analyses, bodies, context)
        for index, analysis in enumerate(analyses):
            context.set_response_content_type(index, JSON)
            if analysis.error is not None:
                context.set_response_status(analysis.error.status, analysis.error.error, index)
        return [json.dumps(body) for body in bodies]
