"""The TAO image-classification spec format, per release: the messages and fields each
release's protos declare, what its validator requires, and the strings and values TAO accepts.

The 3.0 schema is the TAO 3.0 classification spec (``model_config``, ``train_config``,
``eval_config``) declared here as a protobuf descriptor, so protobuf's own text-format parser
(``tao_step.spec_text``) does the parsing. It is proto2 so that a field written as
``n_epochs: 0`` and a missing ``n_epochs`` can be told apart. "3.0" accepts both
``use_imagenet_head`` (3.0's name) and ``retain_head``; "5.0" is TAO 5's protos
(tao_tensorflow1_backend@d73dcfc ``nvidia_tao_tf1/cv/makenet/proto/``: ``retain_head`` only,
plus ``byom_model`` and ``visualizer``) with the rules its spec validator enforces
(``spec_handling/constants.py``, ``cv/common/spec_validator.py``): on proto3 an unset number
is 0, so ``preprocess_mode``, both ``n_workers``, ``reg_config.scope`` and a positive
``weight_decay`` are required there.
"""

import re

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "tao_step.classification"
ROOT_MESSAGE = "ClassificationExperimentConfig"

ARCHITECTURES = (
    "resnet", "vgg", "alexnet", "googlenet", "mobilenet_v1", "mobilenet_v2", "squeezenet",
    "darknet", "cspdarknet", "cspdarknet_tiny",
) + tuple(f"efficientnet_b{i}" for i in range(8))
# n_layers TAO builds for the architectures that take it.
ARCH_LAYERS = {"resnet": (10, 18, 34, 50, 101, 152), "vgg": (16, 19), "darknet": (19, 53)}
PREPROCESS_MODES = ("tf", "caffe", "torch")
REGULARIZERS = ("L1", "L2", "None")
OPTIMIZERS = ("sgd", "adam", "rmsprop")
LR_SCHEDULES = ("step", "soft_anneal", "cosine")
# Every spec field that names a file or folder; TAO resolves them inside its container.
PATH_FIELDS = (
    "train_config.train_dataset_path",
    "train_config.val_dataset_path",
    "train_config.pretrained_model_path",
    "eval_config.eval_dataset_path",
    "eval_config.model_path",
)

# (message, ((field, type), ...)). A type is a scalar name, "repeated T", "map<K,V>", an enum
# from _ENUMS or another message; a message in _ONEOFS keeps all its fields in that oneof.
_MESSAGES = (
    ("BatchNormConfig", (("momentum", "float"), ("epsilon", "float"))),
    ("Activation", (
        ("activation_type", "string"),
        ("activation_parameters", "map<string,float>"),
    )),
    ("ModelConfig", (
        ("arch", "string"),
        ("input_image_size", "string"),
        ("n_layers", "uint32"),
        ("resize_interpolation_method", "InterpolationMethod"),
        ("use_imagenet_head", "bool"),
        ("retain_head", "bool"),
        ("use_batch_norm", "bool"),
        ("use_bias", "bool"),
        ("use_pooling", "bool"),
        ("all_projections", "bool"),
        ("freeze_bn", "bool"),
        ("freeze_blocks", "repeated uint32"),
        ("dropout", "float"),
        ("batch_norm_config", "BatchNormConfig"),
        ("activation", "Activation"),
    )),
    ("SgdOptimizerConfig", (
        ("lr", "float"), ("decay", "float"), ("momentum", "float"), ("nesterov", "bool"),
    )),
    ("AdamOptimizerConfig", (
        ("lr", "float"), ("beta_1", "float"), ("beta_2", "float"), ("epsilon", "float"),
        ("decay", "float"),
    )),
    ("RmspropOptimizerConfig", (
        ("lr", "float"), ("rho", "float"), ("epsilon", "float"), ("decay", "float"),
    )),
    ("OptimizerConfig", (
        ("sgd", "SgdOptimizerConfig"),
        ("adam", "AdamOptimizerConfig"),
        ("rmsprop", "RmspropOptimizerConfig"),
    )),
    ("StepLrConfig", (("learning_rate", "float"), ("step_size", "uint32"), ("gamma", "float"))),
    ("SoftAnnealLrConfig", (
        ("learning_rate", "float"),
        ("soft_start", "float"),
        ("annealing_divider", "float"),
        ("annealing_points", "repeated float"),
    )),
    ("CosineLrConfig", (
        ("learning_rate", "float"), ("min_lr_ratio", "float"), ("soft_start", "float"),
    )),
    ("LRConfig", (
        ("step", "StepLrConfig"),
        ("soft_anneal", "SoftAnnealLrConfig"),
        ("cosine", "CosineLrConfig"),
    )),
    ("RegConfig", (("type", "string"), ("scope", "string"), ("weight_decay", "float"))),
    ("TrainConfig", (
        ("train_dataset_path", "string"),
        ("val_dataset_path", "string"),
        ("pretrained_model_path", "string"),
        ("optimizer", "OptimizerConfig"),
        ("batch_size_per_gpu", "uint32"),
        ("n_epochs", "uint32"),
        ("n_workers", "uint32"),
        ("reg_config", "RegConfig"),
        ("lr_config", "LRConfig"),
        ("random_seed", "uint32"),
        ("enable_random_crop", "bool"),
        ("enable_center_crop", "bool"),
        ("enable_color_augmentation", "bool"),
        ("label_smoothing", "float"),
        ("preprocess_mode", "string"),
        ("mixup_alpha", "float"),
        ("model_parallelism", "repeated float"),
        ("image_mean", "map<string,float>"),
        ("disable_horizontal_flip", "bool"),
    )),
    ("EvalConfig", (
        ("top_k", "uint32"),
        ("eval_dataset_path", "string"),
        ("model_path", "string"),
        ("batch_size", "uint32"),
        ("n_workers", "uint32"),
        ("enable_center_crop", "bool"),
    )),
    (ROOT_MESSAGE, (
        ("model_config", "ModelConfig"),
        ("train_config", "TrainConfig"),
        ("eval_config", "EvalConfig"),
    )),
)


def _tao5_messages():
    """TAO 5's messages: 3.0's with ModelConfig's head flag renamed to retain_head, the
    bring-your-own-model path, and the experiment-tracking block of train_config."""
    changed = {
        "ModelConfig": lambda fields: tuple(
            f for f in fields if f[0] != "use_imagenet_head") + (("byom_model", "string"),),
        "TrainConfig": lambda fields: fields + (("visualizer", "VisualizerConfig"),),
    }
    tracking = (
        ("WandBConfig", (
            ("enabled", "bool"), ("key", "string"), ("project", "string"),
            ("entity", "string"), ("reinit", "bool"), ("name", "string"),
            ("tags", "repeated string"), ("wandb_dir", "string"), ("notes", "string"),
            ("mode", "WandBMode"),
        )),
        ("ClearMLConfig", (
            ("project", "string"), ("task", "string"), ("tags", "repeated string"),
            ("reuse_last_task_id", "bool"), ("continue_last_task", "bool"),
            ("deferred_init", "bool"),
        )),
        ("VisualizerConfig", (
            ("enabled", "bool"), ("num_images", "uint32"), ("weight_histograms", "bool"),
            ("wandb_config", "WandBConfig"), ("clearml_config", "ClearMLConfig"),
        )),
    )
    return tracking + tuple((name, changed.get(name, lambda f: f)(fields))
                            for name, fields in _MESSAGES)


_ENUMS = {"InterpolationMethod": ("BILINEAR", "BICUBIC"),
          "WandBMode": ("ONLINE", "OFFLINE", "DISABLED")}
_ONEOFS = {"OptimizerConfig": "optim", "LRConfig": "lr_scheduler"}

_FDP = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "string": _FDP.TYPE_STRING,
    "bool": _FDP.TYPE_BOOL,
    "float": _FDP.TYPE_FLOAT,
    "uint32": _FDP.TYPE_UINT32,
}

# Fields whose absence makes TAO fail or silently train something else; eval_config is
# required because the pipeline evaluates and runs inference from every spec it trains.
REQUIRED = (
    ("model_config", "the model to build, e.g. model_config { arch: \"resnet\" ... }"),
    ("model_config.arch", "e.g. arch: \"resnet\""),
    ("model_config.input_image_size", "e.g. input_image_size: \"3,224,224\""),
    ("train_config", "the training recipe: train_config { ... }"),
    ("train_config.train_dataset_path", "the training split, a folder of class folders"),
    ("train_config.val_dataset_path", "the validation split, a folder of class folders"),
    ("train_config.optimizer", "e.g. optimizer { sgd { lr: 0.01 momentum: 0.9 } }"),
    ("train_config.batch_size_per_gpu", "e.g. batch_size_per_gpu: 64"),
    ("train_config.n_epochs", "e.g. n_epochs: 80"),
    ("train_config.reg_config", ("e.g. reg_config { type: \"L2\" scope: \"Conv2D,Dense\" "
                                "weight_decay: 0.00005 }")),
    ("train_config.lr_config", ("e.g. lr_config { step { learning_rate: 0.006 step_size: 10 "
                               "gamma: 0.1 } }")),
    ("eval_config", "evaluate and inference read it: eval_config { ... }"),
    ("eval_config.top_k", "e.g. top_k: 3"),
    ("eval_config.eval_dataset_path", "the split to evaluate, e.g. the test split"),
    ("eval_config.model_path", "the checkpoint evaluate reads: the last one training writes"),
    ("eval_config.batch_size", "e.g. batch_size: 256"),
)


def _field_proto(message, number, name, type_text):
    field = descriptor_pb2.FieldDescriptorProto(name=name, number=number)
    field.label = _FDP.LABEL_OPTIONAL
    if type_text.startswith("repeated "):
        field.label = _FDP.LABEL_REPEATED
        type_text = type_text[len("repeated "):]
    map_types = re.match(r"map<(\w+),(\w+)>$", type_text)
    if map_types:
        entry = message.nested_type.add(name=_camel(name) + "Entry")
        entry.options.map_entry = True
        for entry_number, (entry_name, entry_type) in enumerate(
                zip(("key", "value"), map_types.groups()), 1):
            entry.field.add(name=entry_name, number=entry_number, label=_FDP.LABEL_OPTIONAL,
                            type=_SCALARS[entry_type])
        field.label = _FDP.LABEL_REPEATED
        field.type = _FDP.TYPE_MESSAGE
        field.type_name = f".{PACKAGE}.{message.name}.{entry.name}"
    elif type_text in _SCALARS:
        field.type = _SCALARS[type_text]
    elif type_text in _ENUMS:
        field.type = _FDP.TYPE_ENUM
        field.type_name = f".{PACKAGE}.{type_text}"
    else:
        field.type = _FDP.TYPE_MESSAGE
        field.type_name = f".{PACKAGE}.{type_text}"
    return field


def _camel(name):
    return "".join(part.capitalize() for part in name.split("_"))


def _file_descriptor_proto(messages):
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="tao_step/classification_spec.proto", package=PACKAGE, syntax="proto2")
    for enum_name, values in _ENUMS.items():
        enum = file_proto.enum_type.add(name=enum_name)
        for number, value in enumerate(values):
            enum.value.add(name=value, number=number)
    for message_name, fields in messages:
        message = file_proto.message_type.add(name=message_name)
        if message_name in _ONEOFS:
            message.oneof_decl.add(name=_ONEOFS[message_name])
        for number, (name, type_text) in enumerate(fields, 1):
            field = _field_proto(message, number, name, type_text)
            if message_name in _ONEOFS:
                field.oneof_index = 0
            message.field.add().CopyFrom(field)
    return file_proto


def _message_class(messages):
    pool = descriptor_pool.DescriptorPool()  # one pool per schema: the names repeat
    pool.Add(_file_descriptor_proto(messages))
    descriptor = pool.FindMessageTypeByName(f"{PACKAGE}.{ROOT_MESSAGE}")
    get_class = getattr(message_factory, "GetMessageClass", None)  # protobuf >= 4.21
    if get_class is not None:
        return get_class(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


ClassificationExperimentConfig = _message_class(_MESSAGES)
Tao5ExperimentConfig = _message_class(_tao5_messages())

# TAO 5's validator compares every number and string it knows, set or not, and an unset
# proto3 field reads 0 or "": these are therefore required there too.
REQUIRED_5_0 = REQUIRED + (
    ("train_config.n_workers", "TAO 5 requires it > 0, e.g. n_workers: 8"),
    ("train_config.preprocess_mode", 'TAO 5 requires it: "caffe" for NGC\'s pretrained models'),
    ("eval_config.n_workers", "TAO 5 requires it > 0 whenever eval_config is written, "
                              "e.g. n_workers: 8"),
    ("train_config.reg_config.scope", 'TAO 5 requires it, e.g. scope: "Conv2D,Dense"'),
    ("train_config.reg_config.weight_decay", "TAO 5 requires it > 0 even with type \"None\", "
                                             "e.g. weight_decay: 0.00005"),
)
# Fields a release renamed: the old name gets "renamed" instead of "unknown field".
RENAMED_5_0 = {"use_imagenet_head": "retain_head"}


class Schema:
    """A release's spec format: its message class and what its validator requires."""

    def __init__(self, name, message_class, required, renamed=None, positive_decay=False):
        self.name = name
        self.message_class = message_class
        self.required = required
        self.renamed = renamed or {}
        # TAO 5 checks weight_decay > 0 whatever the regularizer type.
        self.positive_decay = positive_decay


SCHEMAS = {
    "3.0": Schema("3.0", ClassificationExperimentConfig, REQUIRED),
    "5.0": Schema("5.0", Tao5ExperimentConfig, REQUIRED_5_0, RENAMED_5_0, positive_decay=True),
}
DEFAULT_SCHEMA = "3.0"


def schema_of(name):
    """The Schema named ``name`` (a TAO version); ValueError naming the known ones."""
    if name not in SCHEMAS:
        raise ValueError("no spec schema for TAO %r (known: %s)" % (name, ", ".join(SCHEMAS)))
    return SCHEMAS[name]
