namespace DreamBooth.Cmdlets;

/// <summary>diffusers' train_dreambooth.py flags and the Start-DreamBoothTraining parameters they map to (docs/parameters.md).</summary>
public static class ParameterMap
{
    public static readonly IReadOnlyDictionary<string, string> DiffusersFlags = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
    {
        ["pretrained_model_name_or_path"] = "Model",
        ["instance_data_dir"] = "InstanceDataDirectory",
        ["instance_prompt"] = "InstancePrompt",
        ["caption_extension"] = "CaptionExtension",   // kohya-ss sd-scripts
        ["shuffle_caption"] = "ShuffleCaption",
        ["keep_tokens"] = "KeepTokens",
        ["keep_tokens_separator"] = "KeepTokensSeparator",
        ["caption_dropout_rate"] = "CaptionDropoutRate",
        ["caption_tag_dropout_rate"] = "CaptionTagDropoutRate",
        ["caption_dropout_every_n_epochs"] = "CaptionDropoutEveryNEpochs",
        ["class_data_dir"] = "ClassDataDirectory",
        ["class_prompt"] = "ClassPrompt",
        ["concepts_list"] = "Concept",   // the concepts-list fork of train_dreambooth.py
        ["num_repeats"] = "Repeats",     // kohya-ss' dataset config
        ["with_prior_preservation"] = "WithPriorPreservation",
        ["prior_loss_weight"] = "PriorLossWeight",
        ["num_class_images"] = "NumClassImages",
        ["sample_batch_size"] = "SampleBatchSize",
        ["prior_generation_precision"] = "PriorGenerationPrecision",
        ["resolution"] = "Resolution",
        ["center_crop"] = "CenterCrop",
        ["random_flip"] = "RandomFlip",
        ["enable_bucket"] = "EnableBucket",   // kohya-ss sd-scripts
        ["min_bucket_reso"] = "MinBucketResolution",
        ["max_bucket_reso"] = "MaxBucketResolution",
        ["bucket_reso_steps"] = "BucketResolutionSteps",
        ["train_batch_size"] = "TrainBatchSize",
        ["gradient_accumulation_steps"] = "GradientAccumulationSteps",
        ["learning_rate"] = "LearningRate",
        ["scale_lr"] = "ScaleLearningRate",
        ["lr_scheduler"] = "LearningRateScheduler",
        ["lr_warmup_steps"] = "LearningRateWarmupSteps",
        ["lr_num_cycles"] = "LearningRateNumCycles",
        ["lr_power"] = "LearningRatePower",
        ["max_train_steps"] = "MaxTrainSteps",
        ["num_train_epochs"] = "NumTrainEpochs",
        ["train_text_encoder"] = "TrainTextEncoder",
        ["learning_rate_te"] = "TextEncoderLearningRate",   // kohya-ss train_db.py
        ["text_encoder_lr"] = "TextEncoderLearningRate",    // kohya-ss train_network.py
        ["stop_text_encoder_training"] = "StopTextEncoderTraining",   // kohya-ss train_db.py
        ["adam_beta1"] = "AdamBeta1",
        ["adam_beta2"] = "AdamBeta2",
        ["adam_weight_decay"] = "AdamWeightDecay",
        ["adam_epsilon"] = "AdamEpsilon",
        ["max_grad_norm"] = "MaxGradNorm",
        ["seed"] = "Seed",
        ["checkpointing_steps"] = "CheckpointingSteps",
        ["checkpoints_total_limit"] = "CheckpointsTotalLimit",
        ["save_every_n_epochs"] = "CheckpointingEpochs",   // kohya-ss
        ["save_precision"] = "SavePrecision",             // kohya-ss
        ["validation_prompt"] = "ValidationPrompt",
        ["num_validation_images"] = "NumValidationImages",
        ["validation_steps"] = "ValidationSteps",
        ["validation_scheduler"] = "ValidationScheduler",
        ["offset_noise"] = "OffsetNoise",
        ["noise_offset"] = "NoiseOffset",
        ["adaptive_noise_scale"] = "AdaptiveNoiseScale",   // kohya-ss   // kohya-ss (its clip_skip counts from 1 = the last layer, so it is not mapped: -ClipSkip is diffusers')
        ["snr_gamma"] = "SnrGamma",
        ["min_snr_gamma"] = "SnrGamma",       // kohya-ss
        ["input_perturbation"] = "InputPerturbation",   // diffusers' train_text_to_image.py
        ["ip_noise_gamma"] = "InputPerturbation",       // kohya-ss
        ["debiased_estimation_loss"] = "DebiasedEstimationLoss",
        ["multires_noise_iterations"] = "MultiresNoiseIterations",
        ["multires_noise_discount"] = "MultiresNoiseDiscount",
        ["loss_type"] = "LossType",           // kohya-ss, diffusers' scheduled_huber_loss_training
        ["huber_schedule"] = "HuberSchedule",
        ["huber_c"] = "HuberC",
        ["output_dir"] = "OutputDirectory",
        ["report_to"] = "ReportTo",
        ["logging_dir"] = "LoggingDirectory",
        ["mixed_precision"] = "MixedPrecision",
        ["gradient_checkpointing"] = "GradientCheckpointing",
        ["use_8bit_adam"] = "Use8BitAdam",
        ["set_grads_to_none"] = "SetGradsToNone",
        ["enable_xformers_memory_efficient_attention"] = "MemoryEfficientAttention",
        ["allow_tf32"] = "AllowTf32",
        ["rank"] = "Rank",   // train_dreambooth_lora.py
    };

    /// <summary>A config-file key as our parameter name ("learning_rate" → LearningRate; "LearningRate" unchanged).</summary>
    public static string ToParameterName(string key)
    {
        var k = key.TrimStart('-');
        return DiffusersFlags.TryGetValue(k, out var name) ? name : k;
    }
}
