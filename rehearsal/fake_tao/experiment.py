"""How TAO reads an experiment spec, emulated for the fake TAO without the project's checks.

TAO merges the file into its ``Experiment`` protobuf with ``text_format.Merge`` (a field the
proto does not have is a ``ParseError``) and then runs its spec validator; the fake does the
same with its own copy of the protos and of the validator's tables, so a mistake in
``tao_step.specs`` is not mirrored here. Sources: tao_tensorflow1_backend@d73dcfc
``nvidia_tao_tf1/cv/makenet/proto/*.proto``, ``cv/common/proto/{visualizer,wandb,clearml}
_config.proto``, ``cv/makenet/spec_handling/{spec_loader,constants}.py`` and
``cv/common/spec_validator.py``; TAO 3.0's protos and validator are not public, so the 3.0
rules are the reference's (``shared/reference/tao-classification-cli.md``, "Spec files").

What the validator does, and ``validate`` too: a message named in the schema's required
list must be present; every scalar field whose name has a value check is compared, in every
message present, whether it was written or not (proto3 reads an unset field as 0 or "");
an assertion error names the first field that fails, e.g. ``Experiment Spec Setting Error:
n_epochs should > 0. Wrong value: 0``.
"""

from __future__ import annotations

from typing import NamedTuple

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

# TAO 5's messages, each field "type name"; text format does not see the field numbers.
MESSAGES_5_0 = {
    "BatchNormConfig": "float momentum; float epsilon",
    "Activation": "string activation_type; map<string,float> activation_parameters",
    "ModelConfig": (
        "string arch; string input_image_size; InterpolationMethod resize_interpolation_method;"
        " uint32 n_layers; bool retain_head; bool use_batch_norm; bool use_bias;"
        " bool use_pooling; bool all_projections; bool freeze_bn; repeated uint32 freeze_blocks;"
        " float dropout; BatchNormConfig batch_norm_config; Activation activation;"
        " string byom_model"),
    "SgdOptimizerConfig": "float lr; float decay; float momentum; bool nesterov",
    "AdamOptimizerConfig": "float lr; float beta_1; float beta_2; float epsilon; float decay",
    "RmspropOptimizerConfig": "float lr; float rho; float epsilon; float decay",
    "OptimizerConfig": ("oneof optim: SgdOptimizerConfig sgd; AdamOptimizerConfig adam;"
                        " RmspropOptimizerConfig rmsprop"),
    "StepLrConfig": "float learning_rate; uint32 step_size; float gamma",
    "SoftAnnealLrConfig": ("float learning_rate; float soft_start; float annealing_divider;"
                           " repeated float annealing_points"),
    "CosineLrConfig": "float learning_rate; float min_lr_ratio; float soft_start",
    "LRConfig": ("oneof lr_scheduler: StepLrConfig step; SoftAnnealLrConfig soft_anneal;"
                 " CosineLrConfig cosine"),
    "RegConfig": "string type; string scope; float weight_decay",
    "WandBConfig": ("bool enabled; string key; string project; string entity; bool reinit;"
                    " string name; repeated string tags; string wandb_dir; string notes;"
                    " WandBMode mode"),
    "ClearMLConfig": ("string project; string task; repeated string tags;"
                      " bool reuse_last_task_id; bool continue_last_task; bool deferred_init"),
    "VisualizerConfig": ("bool enabled; uint32 num_images; bool weight_histograms;"
                         " WandBConfig wandb_config; ClearMLConfig clearml_config"),
    "TrainConfig": (
        "string train_dataset_path; string val_dataset_path; string pretrained_model_path;"
        " OptimizerConfig optimizer; uint32 batch_size_per_gpu; uint32 n_epochs;"
        " uint32 n_workers; RegConfig reg_config; LRConfig lr_config; uint32 random_seed;"
        " bool enable_random_crop; bool enable_center_crop; bool enable_color_augmentation;"
        " float label_smoothing; string preprocess_mode; float mixup_alpha;"
        " repeated float model_parallelism; map<string,float> image_mean;"
        " bool disable_horizontal_flip; VisualizerConfig visualizer"),
    "EvalConfig": ("uint32 top_k; string eval_dataset_path; string model_path;"
                   " uint32 batch_size; uint32 n_workers; bool enable_center_crop"),
    "Experiment": "EvalConfig eval_config; ModelConfig model_config; TrainConfig train_config",
}
ENUMS = {"InterpolationMethod": ("BILINEAR", "BICUBIC"),
         "WandBMode": ("ONLINE", "OFFLINE", "DISABLED")}
# TAO 3.0's docs (v30.2202) name the head flag use_imagenet_head, TAO 4 and 5 retain_head;
# the rest of 3.0's protos is not public, so the fake takes 5.0's and both flags.
MESSAGES_3_0 = dict(MESSAGES_5_0, ModelConfig=MESSAGES_5_0["ModelConfig"]
                    + "; bool use_imagenet_head")

# constants.py: the messages each schema requires at the top, and in each message those it
# requires (only message-typed names are checked for presence).
TRAINVAL_REQUIRED = ("model_config", "train_config")
VALIDATION_REQUIRED = TRAINVAL_REQUIRED + ("eval_config",)
REQUIRED_MSG_DICT = {
    "model_config": ("arch", "input_image_size"),
    "eval_config": ("top_k", "eval_dataset_path", "model_path", "batch_size"),
    "train_config": ("train_dataset_path", "val_dataset_path", "optimizer",
                     "batch_size_per_gpu", "n_epochs", "reg_config", "lr_config"),
    "reg_config": ("type", "scope", "weight_decay"),
}
ARCHITECTURES = ["resnet", "vgg", "alexnet", "googlenet", "mobilenet_v1", "mobilenet_v2",
                 "squeezenet", "darknet"] + [f"efficientnet_b{i}" for i in range(8)] + [
                     "cspdarknet", "cspdarknet_tiny"]
# TRAINVAL_VALUE_CHECK_DICT: field name -> (operator, limit), checked in order.
VALUE_CHECKS = {
    "arch": (("!=", ""), ("in", ARCHITECTURES)),
    "input_image_size": (("!=", ""),), "activation_type": (("!=", ""),),
    "n_workers": ((">", 0),), "label_smoothing": ((">=", 0.0),), "mixup_alpha": ((">=", 0.0),),
    "train_dataset_path": (("!=", ""),), "val_dataset_path": (("!=", ""),),
    "n_epochs": ((">", 0),), "batch_size_per_gpu": ((">", 0),),
    "preprocess_mode": (("in", ["tf", "caffe", "torch"]),),
    "eval_dataset_path": (("!=", ""),), "learning_rate": ((">", 0.0),),
    "momentum": ((">=", 0),), "epsilon": ((">=", 0),), "rho": ((">=", 0),),
    "beta_1": ((">=", 0),), "beta_2": ((">=", 0),), "decay": ((">=", 0),),
    "dropout": ((">=", 0.0),), "step_size": ((">=", 0),), "gamma": ((">=", 0.0),),
    "soft_start": ((">=", 0),), "annealing_divider": ((">=", 0),),
    "annealing_points": ((">=", 0),), "min_lr_ratio": ((">=", 0.0),), "lr": ((">", 0.0),),
    "type": (("!=", ""), ("in", ["L1", "L2", "None"])), "scope": (("!=", ""),),
    "weight_decay": ((">", 0.0),),
}
OPERATORS = {"!=": lambda a, b: a != b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
             "in": lambda a, b: a in b}
# The scalar fields tao-classification-cli.md calls required in 3.0 ("Required:"), as
# message -> names (eval_config's wherever the spec has one).
REQUIRED_3_0 = {
    "model_config": ("arch", "input_image_size"),
    "train_config": ("train_dataset_path", "val_dataset_path", "batch_size_per_gpu",
                     "n_epochs"),
    "eval_config": ("top_k", "eval_dataset_path", "model_path", "batch_size"),
}


class SpecFormat(NamedTuple):
    """How one TAO release reads a spec (``releases.FakeRelease.spec_format``): its protos
    and how strict its validator is."""
    messages: dict
    # TAO 5 compares every field it has a check for, written or not; for 3.0 only the
    # written ones are compared, plus the reference's required ones, which must be set.
    checks_unset: bool
    required_scalars: dict



class SpecError(Exception):
    """TAO refusing the spec; the message is what TAO raises."""


def _file_proto(messages: dict) -> descriptor_pb2.FileDescriptorProto:
    # No package, as TAO's protos: ParseError names "ModelConfig", not a qualified name.
    proto = descriptor_pb2.FileDescriptorProto(name="experiment.proto", syntax="proto3")
    kinds = descriptor_pb2.FieldDescriptorProto
    scalars = {"string": kinds.TYPE_STRING, "bool": kinds.TYPE_BOOL,
               "float": kinds.TYPE_FLOAT, "uint32": kinds.TYPE_UINT32}
    for name, values in ENUMS.items():
        enum = proto.enum_type.add(name=name)
        for number, value in enumerate(values):
            enum.value.add(name=value, number=number)
    for name, text in messages.items():
        message = proto.message_type.add(name=name)
        oneof = None
        if text.startswith("oneof "):
            oneof_name, text = text[len("oneof "):].split(": ", 1)
            message.oneof_decl.add(name=oneof_name)
            oneof = 0
        for number, declaration in enumerate(text.split("; "), 1):
            *words, field_name = declaration.split()
            field = message.field.add(name=field_name, number=number,
                                      label=kinds.LABEL_OPTIONAL)
            if oneof is not None:
                field.oneof_index = oneof
            if words[0] == "repeated":
                field.label = kinds.LABEL_REPEATED
                words = words[1:]
            kind = words[0]
            if kind.startswith("map<"):
                entry = message.nested_type.add(
                    name="".join(p.capitalize() for p in field_name.split("_")) + "Entry")
                entry.options.map_entry = True
                for entry_number, (entry_name, entry_kind) in enumerate(
                        zip(("key", "value"), kind[4:-1].split(","), strict=True), 1):
                    entry.field.add(name=entry_name, number=entry_number,
                                    label=kinds.LABEL_OPTIONAL, type=scalars[entry_kind])
                field.label = kinds.LABEL_REPEATED
                field.type = kinds.TYPE_MESSAGE
                field.type_name = f".{name}.{entry.name}"
            elif kind in scalars:
                field.type = scalars[kind]
            else:
                field.type = kinds.TYPE_ENUM if kind in ENUMS else kinds.TYPE_MESSAGE
                field.type_name = f".{kind}"
    return proto


def _experiment_class(messages: dict):
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file_proto(messages))
    descriptor = pool.FindMessageTypeByName("Experiment")
    get_class = getattr(message_factory, "GetMessageClass", None)  # protobuf >= 4.21
    if get_class is not None:
        return get_class(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


_CLASSES = {}


def parse(text: str, spec_format: SpecFormat):
    """The spec as TAO's protobuf; SpecError with text_format's message when it does not
    parse (a syntax error, a field the release's protos do not have)."""
    key = id(spec_format.messages)
    if key not in _CLASSES:
        _CLASSES[key] = _experiment_class(spec_format.messages)
    spec = _CLASSES[key]()
    try:
        text_format.Merge(text, spec)
    except text_format.ParseError as error:
        raise SpecError(f"google.protobuf.text_format.ParseError: {error}") from None
    return spec


def _check_value(name, value, checks):
    """check_value: the first check ``value`` fails, in TAO's words."""
    for operator, limit in checks:
        if not OPERATORS[operator](value, limit):
            problem = (f"{name} should be set." if limit == "" else
                       f"{name} should {operator} {limit}. Wrong value: {value}")
            raise SpecError(f"AssertionError: Experiment Spec Setting Error: {problem}")


def validate(spec, spec_format: SpecFormat, required_messages: tuple) -> None:
    """SpecValidator.validate as TAO runs it after loading (``required_messages``: the
    schema's, TRAINVAL_REQUIRED or VALIDATION_REQUIRED); SpecError on the first field that
    fails, with TAO's assertion message."""

    def walk(message, required, required_scalars):  # spec_validator, recursive
        for field in message.DESCRIPTOR.fields:
            value = getattr(message, field.name)
            if field.type == field.TYPE_MESSAGE:
                if field.message_type.GetOptions().map_entry:
                    continue  # protobuf checks maps itself
                if field.name in required and not message.HasField(field.name):
                    raise SpecError(f"AssertionError: {field.name} should be set in "
                                    "experiment spec file.")
                if message.HasField(field.name):
                    walk(value, REQUIRED_MSG_DICT.get(field.name, ()),
                         spec_format.required_scalars.get(field.name, ()))
                continue
            values = list(value) if field.label == field.LABEL_REPEATED else [value]
            needed = field.name in required_scalars
            for item in values if field.name in VALUE_CHECKS else ():
                if spec_format.checks_unset or needed or item not in ("", 0):
                    _check_value(field.name, item, VALUE_CHECKS[field.name])
            if needed and values in ([""], [0]):
                raise SpecError(f"AssertionError: {field.name} should be set in experiment "
                                "spec file.")

    walk(spec, required_messages, ())
