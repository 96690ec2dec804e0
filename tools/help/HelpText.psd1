@{
    # Parameter descriptions shared by several cmdlets; a cmdlet's own Parameters entry wins.
    Common = @{
        Model = 'The model: a diffusers pipeline folder, a training output folder, a checkpoint-N folder, a single-file SD 1.x/2.x .safetensors checkpoint (converted once into $env:DREAMBOOTH_CACHE, default ~/.cache/dreambooth/single-file; its tokenizer comes from $env:DREAMBOOTH_TOKENIZER or openai/clip-vit-large-patch14 in the Hugging Face cache), or a Hugging Face id owner/name[@revision] (from the HF cache, downloaded when missing).'
        Offline = 'Never download: a Hub id must already be in the Hugging Face cache (as HF_HUB_OFFLINE=1).'
        NegativePrompt = 'What the image should not show (classifier-free guidance negative prompt).'
        Steps = 'Denoising steps (num_inference_steps).'
        GuidanceScale = 'Classifier-free guidance scale; 1 or less disables guidance.'
        Seed = 'Random seed; image i uses Seed + i. Random when omitted (each image reports its seed).'
        Width = 'Image width in pixels, a multiple of 8. Default: the model''s sample size times the VAE factor.'
        Height = 'Image height in pixels, a multiple of 8. Default: the model''s sample size times the VAE factor.'
        BatchSize = 'Images generated together.'
        Scheduler = 'The sampler: a diffusers class name (DPMSolverMultistepScheduler, EulerDiscreteScheduler, ...) or a short name (dpm++2m, dpm++2m-karras, euler, euler-a, ddim, pndm, ...). Tab completion lists them. Default: the model''s scheduler.'
        Device = 'auto (CUDA when present, else CPU), cpu, cuda or cuda:N.'
        Precision = 'auto (fp16 on CUDA, fp32 on CPU), fp32, fp16 or bf16. On a CPU without fp16/bf16 instructions (AVX-512, AMX) the weights and activations stay in that precision while convolutions, Linear layers and attention compute in fp32 arithmetic and round back, at fp32 speed (-Verbose says so).'
        Force = 'Replace what is already there.'
        Path = 'A file-system path.'
        LoRA = 'LoRA files (pytorch_lora_weights.safetensors from diffusers or this module, or kohya/A1111 files; the layout is detected) or LoRA output folders.'
        LoRAScale = 'Strength of each -LoRA adapter: one value for all, or one per file. 0 gives the model without the adapter.'
        MemoryProfile = 'The diffusers DreamBooth guide''s memory recipe for a GPU of this size (16GB, 12GB or 8GB): turns on exactly its flags and reports which; parameters given explicitly win.'
    }
    Cmdlets = @{
        'Get-DreamBoothEnvironment' = @{
            Synopsis = 'Reports the engine: TorchSharp and libtorch versions, backend, devices (with name and memory of CUDA devices), threads, where the native libraries were loaded from, and how fast fp16/bf16 run on this CPU.'
            Description = 'Use it to check an installation. The engine and its dependencies load in their own AssemblyLoadContext (EngineLoadContext), apart from other modules. CpuAllocator tells the CPU memory policy and CudaAllocator the CUDA one (on Linux the module asks libtorch for expandable segments, which lowers the peak device memory of training; PYTORCH_CUDA_ALLOC_CONF set before starting pwsh wins, DREAMBOOTH_CUDA_ALLOCATOR=default turns it off); CpuFp16Slowdown and CpuBf16Slowdown (list view: CpuHalfPrecision) how many times longer a small convolution takes in fp16/bf16 than in fp32 with libtorch''s kernels on this CPU, measured once per session; CpuFp16Emulated and CpuBf16Emulated say whether the engine computes that precision in fp32 arithmetic here instead (a CPU without the instructions for it), which keeps fp32 speed.'
            Examples = @(@{ Code = 'Get-DreamBoothEnvironment'; Remarks = 'Shows versions, devices and the native library path.' })
            Parameters = @{}
        }
        'Invoke-DreamBoothInference' = @{
            Synopsis = 'Generates images from text (or from a starting image, -InitImage, and a mask, -MaskImage) with a Stable Diffusion model, a DreamBooth output or a checkpoint.'
            Description = 'With -InitImage it works as diffusers'' StableDiffusionImg2ImgPipeline: the picture is encoded by the VAE, noised to the level -Strength picks, and denoised for the remaining int(Steps x Strength) steps; with -MaskImage too, as its StableDiffusionInpaintPipeline. Writes one PNG per image into -OutputDirectory, with the generation parameters in PNG text chunks (an A1111-style "parameters" entry and dreambooth:* keys), and emits one DreamBoothImage per image. Prompts can come from the pipeline. The model stays loaded for the next call (see Clear-DreamBoothModelCache). Ctrl+C stops between denoising steps.'
            Examples = @(
                @{ Code = "Invoke-DreamBoothInference -Model ./sks-dog-model -Prompt 'a photo of sks dog on the beach' -Steps 30 -Seed 42 -Scheduler dpm++2m"; Remarks = 'One image from a trained model, reproducible with the seed.' }
                @{ Code = "'a photo of sks dog', 'a painting of sks dog' | Invoke-DreamBoothInference -Model ./sks-dog-model/checkpoint-400 -Count 4"; Remarks = 'Four images for each prompt from a training checkpoint.' }
                @{ Code = "Invoke-DreamBoothInference -Model stable-diffusion-v1-5/stable-diffusion-v1-5 -Prompt 'a red bicycle' -Offline"; Remarks = 'A Hub model from the Hugging Face cache, without network access.' }
                @{ Code = "Invoke-DreamBoothInference -Model ./sks-dog-model -Prompt 'an oil painting of sks dog' -InitImage ./sketch.png -Strength 0.6 -Width 512 -Height 512"; Remarks = 'Image to image: the sketch, resized to 512x512, repainted with the trained subject; a lower -Strength keeps more of it.' }
                @{ Code = "Invoke-DreamBoothInference -Model ./sks-dog-model -Prompt 'a photo of sks dog on a sofa' -InitImage ./living-room.png -MaskImage ./sofa-mask.png"; Remarks = 'Inpainting: the trained subject painted into the white area of the mask; the rest of the photo stays.' }
            )
            Parameters = @{
                Prompt = 'The text prompt(s); each gets -Count images. Accepts pipeline input.'
                Count = 'Images per prompt (num_images_per_prompt).'
                ClipSkip = 'Use the text encoder output this many layers before the last (0: the last layer).'
                OutputDirectory = 'Folder for the PNG files (created when missing). Default: ./outputs.'
                NoCache = 'Load the model for this call only instead of keeping it loaded for the next call.'
                GuidanceRescale = 'diffusers'' guidance_rescale (Lin et al. 2023, section 3.4): the guided noise prediction is rescaled towards the spread of the text-conditioned one by this fraction, against over-exposed images from models trained with zero terminal SNR (0.7 is the paper''s value). 0: off. Recorded on the DreamBoothImage and in the PNG.'
                InitImage = 'Image to image (diffusers'' StableDiffusionImg2ImgPipeline, its image argument): the picture each image starts from. The output has its size, rounded down to a multiple of 8, unless -Width and -Height are given (then it is resized to them, Lanczos). The image''s path and the strength are recorded on the DreamBoothImage and in the PNG, so piping the image back repeats it.'
                MaskImage = 'Inpainting (diffusers'' StableDiffusionInpaintPipeline, its mask_image argument), with -InitImage: the white part of this mask is painted anew and the black part kept (grey is read as PIL''s grey conversion and cut at one half). With a regular model the kept part is put back after every step; an inpainting model (a UNet of 9 input channels, such as stable-diffusion-inpainting) sees the mask itself. The mask is resized to the output size; its path is recorded on the DreamBoothImage and in the PNG.'
                Strength = 'With -InitImage: how far to move from the picture, from 0 (kept) to 1 (replaced; diffusers'' default 0.8, and 1 with -MaskImage). The last int(Steps x Strength) of the -Steps denoising steps are run, from the noise level of the first of them.'
            }
        }
        'New-DreamBoothClassImage' = @{
            Synopsis = 'Generates the class images prior preservation needs: only the shortfall up to -Count.'
            Description = 'Counts the images already in -OutputDirectory (other files are not counted) and generates the missing ones with -ClassPrompt, as diffusers'' train_dreambooth.py does before training. Running it again with the same -Count generates and emits nothing. The verbose stream says "found X, generating Y".'
            Examples = @(@{ Code = "New-DreamBoothClassImage -Model ./stable-diffusion-v1-5 -ClassPrompt 'a photo of dog' -OutputDirectory ./class-dog -Count 200 -Verbose"; Remarks = 'Fills ./class-dog up to 200 images.' })
            Parameters = @{
                ClassPrompt = 'The class prompt, e.g. ''a photo of dog'' (diffusers'' --class_prompt).'
                OutputDirectory = 'The class image folder (diffusers'' --class_data_dir); created when missing.'
                Count = 'How many class images the folder should hold (diffusers'' --num_class_images).'
                BatchSize = 'Images generated together (diffusers'' --sample_batch_size).'
            }
        }
        'Start-DreamBoothTraining' = @{
            Synopsis = 'Fine-tunes a Stable Diffusion model on a few photos of a subject (DreamBooth), with prior preservation, checkpoints and validation.'
            Description = 'Mirrors diffusers'' examples/dreambooth/train_dreambooth.py: parameter names follow its flags (aliases accept the flag spelling). All inputs are checked before training starts. Emits a DreamBoothCheckpoint per saved checkpoint, a DreamBoothImage per validation image and finally a DreamBoothModel for the output folder, a diffusers pipeline that Invoke-DreamBoothInference and diffusers load. Ctrl+C stops after the current step and saves a checkpoint to resume from.'
            Examples = @(
                @{ Code = "Start-DreamBoothTraining -Model ./stable-diffusion-v1-5 -InstanceDataDirectory ./dog -InstancePrompt 'a photo of sks dog' -WithPriorPreservation -ClassDataDirectory ./class-dog -ClassPrompt 'a photo of dog' -Resolution 512 -LearningRate 5e-6 -MaxTrainSteps 400 -OutputDirectory ./sks-dog-model"; Remarks = 'The diffusers README''s prior-preservation run.' }
                @{ Code = "Start-DreamBoothTraining -ConfigFile ./dog.json -MaxTrainSteps 800"; Remarks = 'Settings from a JSON or .psd1 file (diffusers flag names or these parameter names); the command line wins.' }
                @{ Code = "Set-Content ./dog/dog2.txt 'a photo of sks dog asleep on a sofa'`nStart-DreamBoothTraining -Model ./stable-diffusion-v1-5 -InstanceDataDirectory ./dog -InstancePrompt 'a photo of sks dog' -CaptionExtension .txt -MaxTrainSteps 400 -OutputDirectory ./sks-dog-captioned"; Remarks = 'dog2.png trains with its own caption, the other photos with -InstancePrompt (kohya-ss caption files).' }
                @{ Code = "Start-DreamBoothTraining -Model ./stable-diffusion-v1-5 -WithPriorPreservation -OutputDirectory ./two-pets -Concept @{ InstanceDataDirectory = './dog'; InstancePrompt = 'a photo of sks dog'; ClassDataDirectory = './class-dog'; ClassPrompt = 'a photo of dog' }, @{ InstanceDataDirectory = './cat'; InstancePrompt = 'a photo of zwx cat'; ClassDataDirectory = './class-cat'; ClassPrompt = 'a photo of cat' }"; Remarks = 'Two subjects in one model, each with its own prompt and class images (the concepts list of the DreamBooth fork of diffusers'' script).' }
            )
            Parameters = @{
                InstanceDataDirectory = 'Folder with 3-5 photos of the subject (--instance_data_dir).'
                InstancePrompt = 'Prompt with the identifier, e.g. ''a photo of sks dog'' (--instance_prompt).'
                ClassDataDirectory = 'Class image folder for prior preservation; missing images are generated first (--class_data_dir).'
                ClassPrompt = 'Prompt of the class, e.g. ''a photo of dog'' (--class_prompt).'
                Concept = 'Several subjects in one run, as the concepts list of the widely used DreamBooth fork of diffusers'' script (--concepts_list): hashtables or objects with InstanceDataDirectory, InstancePrompt and, with -WithPriorPreservation, ClassDataDirectory and ClassPrompt (diffusers'' names instance_data_dir, instance_prompt, class_data_dir, class_prompt work too), or the path of a JSON file holding such a list. Each subject''s photos train with its own prompt, and each class folder is filled with its own class prompt. Without -InstanceDataDirectory the first concept is the run''s main subject; with it, the concepts are trained beside it. A Repeats key (kohya-ss'' num_repeats) counts a concept''s photos that many times an epoch.'
                CheckpointingEpochs = 'kohya-ss'' --save_every_n_epochs: also save a checkpoint at the end of every Nth epoch, beside those of -CheckpointingSteps (a step that is both saves once). -CheckpointsTotalLimit counts them all.'
                InputPerturbation = 'diffusers'' --input_perturbation (kohya-ss'' --ip_noise_gamma): the UNet''s input is noised with the noise plus this much more Gaussian noise, while it still learns to predict the noise itself (0.1 is the recommended value there). 0: off.'
                MultiresNoiseIterations = 'kohya-ss'' --multires_noise_iterations (pyramid noise): this many levels of ever coarser Gaussian noise, each upscaled and weighted by -MultiresNoiseDiscount to the power of its index, are added to the training noise, which is then scaled back to unit variance (6-10 are usual there). 0: off.'
                MultiresNoiseDiscount = 'kohya-ss'' --multires_noise_discount (default 0.3): the weight of each coarser noise level, to the power of its index.'
                DebiasedEstimationLoss = 'kohya-ss'' --debiased_estimation_loss (Yu et al. 2024): each instance image''s loss is weighted 1/sqrt(SNR) of its timestep (1/(SNR+1) for v-prediction models), SNR capped at 1000; with -SnrGamma both weights multiply. The prior loss is not weighted, as with -SnrGamma.'
                SavePrecision = 'kohya-ss'' --save_precision: the final model''s trained components (the UNet, and the text encoder with -TrainTextEncoder) are written in fp32 (default), fp16 or bf16, half the size on disk; diffusers and this module load them into any precision. Checkpoints stay fp32, so a resume continues exactly. LoRA outputs are not affected.'
                LossType = 'The training loss: l2 (the squared error, diffusers'' train_dreambooth.py), huber or smooth_l1 (the scheduled pseudo-Huber losses of kohya-ss and diffusers'' research script scheduled_huber_loss_training: huber 2c(sqrt(e^2+c^2)-c), smooth_l1 2(sqrt(e^2+c^2)-c) for the error e). The Huber losses draw one timestep per batch, as there, so that c follows it.'
                HuberSchedule = 'How the Huber parameter c follows the batch''s timestep: snr (default: near 1 for nearly clean inputs, -HuberC for noisy ones), exponential (1 at timestep 0 down to -HuberC at the last) or constant (-HuberC).'
                HuberC = 'The Huber parameter c (--huber_c, default 0.1), in (0, 1].'
                Repeats = 'kohya-ss'' repeats (num_repeats, the "10_" of its folder names) for the first subject: each of its photos counts this many times an epoch, each time with its own random crop and flip. With -Concept, concepts of few photos can be seen as often as those of many.'
                WithPriorPreservation = 'Add the prior-preservation loss on class images (--with_prior_preservation).'
                PriorLossWeight = 'Weight of the prior-preservation loss (--prior_loss_weight).'
                NumClassImages = 'Class images wanted; the shortfall is generated (--num_class_images).'
                SampleBatchSize = 'Batch size when generating class images (--sample_batch_size).'
                PriorGenerationPrecision = 'Precision for generating class images (--prior_generation_precision): fp32, fp16 or bf16. Default (auto, or no as in diffusers): fp16 on a GPU, fp32 on the CPU.'
                Resolution = 'Training image size, a multiple of 8 (--resolution).'
                CenterCrop = 'Center-crop instead of random crop (--center_crop).'
                RandomFlip = 'Randomly flip images horizontally.'
                TrainBatchSize = 'Instance images per step (--train_batch_size).'
                GradientAccumulationSteps = 'Steps whose gradients add up before an optimizer update (--gradient_accumulation_steps).'
                LearningRate = 'Initial learning rate (--learning_rate).'
                ScaleLearningRate = 'Multiply the learning rate by accumulation steps and batch size (--scale_lr).'
                LearningRateScheduler = 'constant, constant_with_warmup, linear, cosine, cosine_with_restarts or polynomial (--lr_scheduler).'
                LearningRateWarmupSteps = 'Warm-up steps (--lr_warmup_steps).'
                LearningRateNumCycles = 'Hard restarts for cosine_with_restarts (--lr_num_cycles).'
                LearningRatePower = 'Power of the polynomial schedule (--lr_power).'
                MaxTrainSteps = 'Total optimizer steps; overrides -NumTrainEpochs (--max_train_steps).'
                NumTrainEpochs = 'Epochs when -MaxTrainSteps is not given (--num_train_epochs).'
                TrainTextEncoder = 'Also train the text encoder (--train_text_encoder).'
                AdamBeta1 = 'AdamW beta1 (--adam_beta1).'
                AdamBeta2 = 'AdamW beta2 (--adam_beta2).'
                AdamWeightDecay = 'AdamW weight decay (--adam_weight_decay).'
                AdamEpsilon = 'AdamW epsilon (--adam_epsilon).'
                MaxGradNorm = 'Gradient clipping norm (--max_grad_norm).'
                Seed = 'Seed for reproducible training (--seed). Random when omitted; stored in the run.'
                CheckpointingSteps = 'Save a resumable checkpoint every this many steps (--checkpointing_steps).'
                CheckpointsTotalLimit = 'Keep at most this many checkpoints; older ones are removed (--checkpoints_total_limit).'
                ValidationPrompt = 'Prompt(s) rendered during training to watch progress (--validation_prompt). kohya-ss'' sample-prompt options may follow a prompt: --n negative prompt, --w width, --h height, --s steps, --l guidance scale, --d seed (e.g. ''sks dog on a beach --n blurry --w 512 --h 768 --d 42''); such a prompt is rendered with its own settings.'
                NumValidationImages = 'Images per validation prompt (--num_validation_images).'
                ValidationSteps = 'Render validation images every this many steps (--validation_steps).'
                ValidationScheduler = 'Sampler for validation images (--validation_scheduler).'
                OffsetNoise = 'Add offset noise (--offset_noise): noise + 0.1 x N(0,1) per sample and channel, which lets the model learn darker and brighter images.'
                AdaptiveNoiseScale = 'kohya-ss'' --adaptive_noise_scale, with -NoiseOffset: each image''s and channel''s offset noise is -NoiseOffset plus this times the absolute mean of its latents (clamped at 0), so brighter or darker images get more offset (0.01 to 0.1 of the offset is usual there).'
                NoiseOffset = 'The offset noise''s amount (kohya-ss'' --noise_offset, e.g. 0.05); -OffsetNoise is 0.1.'
                ClipSkip = 'Condition the UNet on the text encoder''s output this many layers before its last, final layer norm applied (diffusers'' clip_skip: 1 is the penultimate layer, kohya-ss'' --clip_skip 2), for models trained that way (NovelAI-derived anime models). Validation images use it too; pass the same -ClipSkip to Invoke-DreamBoothInference. Default: 0.'
                SnrGamma = 'Min-SNR loss weighting gamma, e.g. 5 (--snr_gamma).'
                OutputDirectory = 'Where checkpoints and the trained pipeline go (--output_dir). Must not hold checkpoints of another run.'
                TextEncoderLearningRate = 'Learning rate of the text encoder (or its LoRA adapters) with -TrainTextEncoder, on the same schedule as -LearningRate (kohya-ss'' --learning_rate_te). Default: -LearningRate.'
                StopTextEncoderTraining = 'With -TrainTextEncoder: the text encoder trains for this many optimizer steps, then keeps its weights while the UNet trains on (kohya-ss'' --stop_text_encoder_training), which curbs overfitting of the prompt.'
                EnableBucket = 'Aspect-ratio bucketing (kohya-ss'' --enable_bucket): each image trains at the bucket whose aspect ratio is nearest its own (sides in steps of -BucketResolutionSteps, at most -Resolution squared pixels), resized to cover it and cropped, instead of a square crop, so portraits keep their heads and feet. With -TrainBatchSize above 1, each batch keeps to one bucket (kohya-ss'' bucket manager: each bucket''s images shuffled and cut into batches, then the batches shuffled); class images of another size get a forward of their own. The log lists the buckets.'
                MinBucketResolution = 'Shortest bucket side with -EnableBucket (kohya-ss'' --min_bucket_reso). Default: 256.'
                MaxBucketResolution = 'Longest bucket side with -EnableBucket (kohya-ss'' --max_bucket_reso). Default: 1024.'
                BucketResolutionSteps = 'Bucket sides are multiples of this with -EnableBucket (kohya-ss'' --bucket_reso_steps; a multiple of 8). Default: 64.'
                MemoryProfile = 'The diffusers DreamBooth guide''s memory recipe for a GPU of this size (16GB, 12GB or 8GB): turns on exactly its flags and reports which; parameters given explicitly win. Auto picks it from the training GPU''s memory as its driver reports it (none from 20 GB, 16GB from 14, 12GB from 10.5, else 8GB; sized by the SD-1.4 peaks at 512 px) and says which; on the CPU it turns nothing on.'
                ReportTo = 'Where each optimizer step''s loss and learning rate are logged (--report_to): all (default: both files below), tensorboard (an event file that tensorboard --logdir OUTPUT/logs shows, validation images included), csv (training_log.csv, for Import-Csv) or none. A resume drops the rows and events of the steps it repeats. wandb and comet_ml are not offered (online services).'
                LoggingDirectory = 'The logs'' folder (--logging_dir), relative to -OutputDirectory unless absolute; the files go in its dreambooth sub-folder, as accelerate names it. Default: logs. The DreamBoothModel''s LogDirectory says where.'
                MixedPrecision = 'no, fp16 or bf16 (--mixed_precision). A GPU setting above all. On a CPU without fp16/bf16 instructions (AVX-512, AMX) libtorch''s kernels for them are many times slower than fp32, so the engine computes convolutions, Linear layers and attention in fp32 arithmetic on the low-precision values and rounds back (-Verbose says so; Get-DreamBoothEnvironment shows CpuHalfPrecision): about fp32 speed, with the frozen VAE and text encoder held in the low precision.'
                GradientCheckpointing = 'Recompute activations in the backward pass to save memory (--gradient_checkpointing), and text encoder layers when trained. What the UNet recomputes is -GradientCheckpointingMode: by default whole resnets and transformer blocks on a GPU, as diffusers does, and only their norm + activation pairs on the CPU. Gradients equal the plain ones either way.'
                GradientCheckpointingMode = 'What -GradientCheckpointing recomputes in the UNet (no effect without it). Blocks: whole resnets and transformer blocks, as diffusers; the least memory, about one more forward pass per step. Selective: only the norm + activation pairs and feed-forward GEGLUs inside them, keeping convolution and attention outputs; part of the saving for a few percent of step time. Auto (default): Blocks on a GPU, where memory runs out first; Selective on the CPU, where time does (SD-1.4 at 512 px, batch 1: Selective saves 1.1 of the 1.8 GB Blocks saves, for a few percent of step time at most, against 16-26%). -Verbose says which ran.'
                SelectiveCheckpointing = 'Short for -GradientCheckpointing -GradientCheckpointingMode Selective.'
                Use8BitAdam = 'Keep AdamW state in 8 bits (--use_8bit_adam).'
                SetGradsToNone = 'Free gradients instead of zeroing them (--set_grads_to_none).'
                AllowTf32 = 'Run fp32 matrix products in TF32 on CUDA GPUs of the Ampere generation and later (--allow_tf32): faster training at about 10 bits of mantissa in the products. Set for the run only; no effect on the CPU.'
                CaptionExtension = 'Per-image prompts, as kohya-ss sd-scripts'' --caption_extension: an instance image with a text file of this extension beside it (dog1.png and dog1.txt) is trained with that file''s first line as its prompt; images without one use -InstancePrompt. An empty caption file is an error. Without this parameter every instance image gets -InstancePrompt, as in diffusers.'
                ShuffleCaption = 'kohya-ss'' --shuffle_caption: each time an instance image is drawn, its caption''s comma-separated tags come in a new order, after the first -KeepTokens (or the part before -KeepTokensSeparator), so that the model does not learn the tags'' order. The class prompt of prior preservation stays as it is. With a frozen text encoder, the encoder stays loaded to encode the changing captions each step.'
                KeepTokens = 'kohya-ss'' --keep_tokens: how many tags at the front of a caption (e.g. 1 for ''sks dog'') keep their place and are never dropped by -ShuffleCaption and -CaptionTagDropoutRate.'
                KeepTokensSeparator = 'kohya-ss'' --keep_tokens_separator: in a caption that contains this text (e.g. ''|||''), the tags before it are fixed, and after a second occurrence a fixed suffix; in place of -KeepTokens.'
                CaptionDropoutRate = 'kohya-ss'' --caption_dropout_rate: the share (0 to 1) of instance images trained with an empty caption, so the model also learns the unconditional prompt that classifier-free guidance starts from.'
                CaptionTagDropoutRate = 'kohya-ss'' --caption_tag_dropout_rate: the share (0 to 1) of a caption''s tags, after the kept ones, dropped each time it is drawn.'
                CaptionDropoutEveryNEpochs = 'kohya-ss'' --caption_dropout_every_n_epochs: every Nth epoch (counted from 1) trains all instance images with empty captions. 0: never.'
                Deterministic = 'Use libtorch''s deterministic algorithms for the run (accelerate''s set_seed(deterministic=True)), so that a seeded run on a GPU repeats bit for bit: cuDNN takes deterministic convolution algorithms and accumulating operations ordered versions, some slower. Without it, two GPU runs with the same seed agree to about 1e-4 in the loss, as in diffusers. The CPU is deterministic either way. Sets CUBLAS_WORKSPACE_CONFIG=:4096:8 where unset. Stored with the run, so a resume keeps it.'
                OffloadOptimizerState = 'Keep optimizer state in CPU memory and run the AdamW update there (the guide''s DeepSpeed ZeRO-2 CPU offload for 8 GB cards). On a GPU the gradients move to CPU memory too, each as soon as backward has produced it (at the end of each checkpointed block with -GradientCheckpointing), so the card never holds all of them. Same weights as without offloading.'
                CacheLatents = 'Encode each image with the VAE once before training (needs -CenterCrop, no -RandomFlip), then free the VAE unless validation images need it. Images that have one view anyway (no -RandomFlip, nothing to crop) are handled this way without the switch.'
                MemoryEfficientAttention = 'Accepted for compatibility with --enable_xformers_memory_efficient_attention; attention always uses scaled_dot_product_attention.'
                ConfigFile = 'A JSON or .psd1 file of settings named like these parameters or like diffusers'' flags; parameters on the command line win.'
                LoRA = 'Train LoRA adapters on the attention projections (UNet to_q/to_k/to_v/to_out.0; text encoder q/k/v/out_proj with -TrainTextEncoder) instead of the whole model, as diffusers'' train_dreambooth_lora.py. Writes pytorch_lora_weights.safetensors.'
                Rank = 'LoRA rank (--rank); default 4.'
                Alpha = 'LoRA alpha: adapters are scaled by Alpha / Rank. Default: the rank (scale 1).'
                SaveKohyaLoRA = 'Also write the adapters in the kohya / A1111 key layout (pytorch_lora_weights_kohya.safetensors).'
            }
        }
        'Resume-DreamBoothTraining' = @{
            Synopsis = 'Continues a DreamBooth run exactly where a checkpoint left it (the latest, or a given checkpoint-N).'
            Description = 'Restores weights, optimizer, learning-rate schedule, data order and random state from the checkpoint and trains on with the run''s settings. A run that ran out of memory saved such a checkpoint; its error names the switches that lower memory. -GradientCheckpointing (or a -GradientCheckpointingMode), -OffloadOptimizerState and -SetGradsToNone can be turned on here: they change where and when things are computed, not what is learned (offloading and releasing gradients give the same weights bit for bit; checkpointing equal gradients to float rounding). Switches that change the training itself (8-bit Adam, mixed precision, resolution, batch size) need a new run.'
            Examples = @(
                @{ Code = 'Resume-DreamBoothTraining -Path ./sks-dog-model -MaxTrainSteps 800'; Remarks = 'Trains a stopped or finished run on to step 800.' }
                @{ Code = 'Resume-DreamBoothTraining -Path ./sks-dog-model -GradientCheckpointing -OffloadOptimizerState'; Remarks = 'Continues a run that ran out of GPU memory, with less memory from here on.' }
            )
            Parameters = @{
                Path = 'The run''s output folder (resumes from its latest checkpoint) or one checkpoint-N folder.'
                MaxTrainSteps = 'Train to this many steps in total (more than the checkpoint''s step). Default: the run''s own setting.'
                GradientCheckpointing = 'From here on, recompute activations in backward (UNet blocks, and trained text encoder layers): less memory. What the UNet recomputes follows -GradientCheckpointingMode (default Auto: whole blocks on a GPU, their norm + activation pairs on the CPU).'
                GradientCheckpointingMode = 'From here on, what checkpointing recomputes: Blocks (whole resnets and transformer blocks: the least memory, about one more forward per step), Selective (their norm + activation pairs and GEGLUs) or Auto (Blocks on a GPU, Selective on the CPU), with checkpointing on (the run''s own or -GradientCheckpointing).'
                SelectiveCheckpointing = 'Short for -GradientCheckpointing -GradientCheckpointingMode Selective.'
                OffloadOptimizerState = 'From here on, keep the AdamW state in CPU memory and update there; on a GPU the gradients move to CPU memory during backward too. Same weights.'
                SetGradsToNone = 'From here on, release gradients after each step instead of zeroing them. Same weights.'
            }
        }
        'Clear-DreamBoothModelCache' = @{
            Synopsis = 'Releases the models Invoke-DreamBoothInference keeps loaded between calls.'
            Description = 'Frees the memory of cached pipelines. The next inference call loads its model again.'
            Examples = @(@{ Code = 'Clear-DreamBoothModelCache -PassThru'; Remarks = 'Releases every cached model and says how many.' })
            Parameters = @{ PassThru = 'Emit how many cached models were released.' }
        }
        'Merge-DreamBoothLoRA' = @{
            Synopsis = 'Bakes LoRA adapters into a Stable Diffusion model and saves a full diffusers model folder.'
            Description = 'What diffusers'' pipe.fuse_lora() followed by save_pretrained() gives: the UNet and text encoder with W + scale x B.A, and the VAE, tokenizer and scheduler copied. -Model may itself be a LoRA run''s output or checkpoint; its adapters are merged first. The base model''s files are not changed. Emits the output folder.'
            Examples = @(@{ Code = "Merge-DreamBoothLoRA -Model ./stable-diffusion-v1-5 -LoRA ./sks-dog-lora/pytorch_lora_weights.safetensors -LoRAScale 0.8 -OutputDirectory ./sks-dog-merged"; Remarks = 'A standalone model with the adapter baked in at strength 0.8.' })
            Parameters = @{
                Model = 'The base model: a diffusers folder, a training output, a checkpoint-N folder, or a LoRA run''s output.'
                OutputDirectory = 'The folder for the merged diffusers model.'
                Force = 'Write into a non-empty output folder, replacing its model components.'
            }
        }
        'Import-DreamBoothCheckpoint' = @{
            Synopsis = 'Converts a single-file SD 1.x/2.x checkpoint (.safetensors, A1111/ComfyUI layout) into a diffusers model folder.'
            Description = 'Infers the architecture from the weights and reports what it had to assume (image size, prediction type, ...) in Inferred. Pickle files (.ckpt, .bin) are refused because loading them can run code. A single file holds no tokenizer: pass -TokenizerFolder.'
            Examples = @(@{ Code = 'Import-DreamBoothCheckpoint -Path ./v1-5-pruned.safetensors -Destination ./sd15 -TokenizerFolder ./clip-vit-large-patch14'; Remarks = 'Makes ./sd15 a diffusers pipeline folder.' })
            Parameters = @{
                Path = 'The .safetensors single-file checkpoint.'
                Destination = 'The diffusers folder to create.'
                ImageSize = 'Image size the model was trained at (SD 1.x 512, SD 2.x 768); inferred when omitted.'
                PredictionType = 'epsilon or v_prediction (SD 2.x 768 models); the weights cannot tell, so the usual value is chosen and reported.'
                TokenizerFolder = 'A CLIP tokenizer folder (vocab.json, merges.txt) to copy into the model: openai/clip-vit-large-patch14''s for an SD 1.x file, an SD 2.x model''s tokenizer/ folder for an SD 2.x file (it pads with "!"; a folder that pads otherwise is copied as it is, with a warning).'
                Precision = 'Cast the weights: fp32, fp16 or bf16. Default: keep the file''s.'
                Force = 'Replace a model already in -Destination.'
            }
        }
        'Export-DreamBoothCheckpoint' = @{
            Synopsis = 'Writes a diffusers model, a DreamBooth output or a checkpoint-N as one SD single-file .safetensors checkpoint (A1111/ComfyUI layout).'
            Description = 'For a checkpoint-N folder, its trained UNet (and text encoder) replace the base model''s. The diffusers configs are embedded in the file''s metadata so Import-DreamBoothCheckpoint restores them exactly. An existing file is overwritten only with -Force.'
            Examples = @(@{ Code = 'Export-DreamBoothCheckpoint -Model ./sks-dog-model -Path ./sks-dog.safetensors -Precision fp16'; Remarks = 'A 2 GB fp16 file for A1111 or ComfyUI.' })
            Parameters = @{
                Model = 'A diffusers model folder, a training output folder, or a checkpoint-N folder.'
                Path = 'The .safetensors file to write.'
                Precision = 'fp16 (the usual 2 GB SD 1.x file), bf16 or fp32. Default: keep the weights'' dtype.'
                Force = 'Overwrite an existing file.'
            }
        }
        'Get-DreamBoothModel' = @{
            Synopsis = 'Describes models (family, default resolution, prediction type, precision, size) without loading their weights.'
            Description = 'Reads the configs and safetensors headers of a diffusers pipeline folder, a training output, a checkpoint-N folder, a LoRA output, a single .safetensors checkpoint (imported once, as -Model does) or a Hub id already in the Hugging Face cache (never downloaded), and emits a DreamBoothModelInfo: Kind, BaseModel, Family (SD 1.x or SD 2.x), Resolution (the size the model generates at by default; train with it as -Resolution), PredictionType (epsilon or v_prediction), Inpainting (a 9-channel UNet: use it with -InitImage and -MaskImage, not for training), Precision of the stored UNet, parameter counts and SizeGB on disk. Paths that do not exist or are not models get a non-terminating error each. The objects pipe into Start-DreamBoothTraining and Invoke-DreamBoothInference by their Path.'
            Examples = @(
                @{ Code = 'Get-DreamBoothModel ./models/*'; Remarks = 'A table of every model in a folder.' }
                @{ Code = "Get-DreamBoothModel ./stable-diffusion-2-1 | Select-Object Family, Resolution, PredictionType"; Remarks = 'SD 2.1 (768-v): train it with -Resolution 768.' }
            )
            Parameters = @{
                Path = 'Model folders (wildcards allowed), training outputs, checkpoint-N or LoRA folders, .safetensors files, or Hub ids in the Hugging Face cache. Takes objects with a Path, FullName or Model property from the pipeline.'
            }
        }
        'Get-DreamBoothCheckpoint' = @{
            Synopsis = 'Lists the checkpoints of training runs as DreamBoothCheckpoint objects (step, epoch, loss, learning rate, time).'
            Description = 'Reads the dreambooth_checkpoint.json of each checkpoint-N folder of a Start-DreamBoothTraining output folder, by ascending step, or of a checkpoint-N folder given itself. The objects pipe into Resume-DreamBoothTraining and Invoke-DreamBoothInference (by their Path) and stand for their folder wherever a path is asked (Export-DreamBoothCheckpoint -Model (Get-DreamBoothCheckpoint ./run -Latest) -Path run.safetensors). A folder that does not exist, holds no checkpoint or has a damaged manifest gets a non-terminating error, and the other paths are still listed. Checkpoints written before this cmdlet existed show Loss and LearningRate as NaN.'
            Examples = @(
                @{ Code = 'Get-DreamBoothCheckpoint ./sks-dog-model'; Remarks = 'Every checkpoint of a run, as a table.' }
                @{ Code = 'Get-DreamBoothCheckpoint ./sks-dog-model -Latest | Resume-DreamBoothTraining -MaxTrainSteps 800'; Remarks = 'Continues the run from its latest checkpoint.' }
                @{ Code = "Get-DreamBoothCheckpoint ./runs/* | Where-Object Step -ge 400 | Invoke-DreamBoothInference -Prompt 'a photo of sks dog' -Seed 1"; Remarks = 'One image from every checkpoint from step 400 on, across several runs, to compare them with the same seed.' }
            )
            Parameters = @{
                Path = 'Training output folders (wildcards allowed) or checkpoint-N folders. Default: the current folder. Takes DreamBoothModel objects and folders from the pipeline.'
                Latest = 'Only the latest checkpoint of each output folder (the one Resume-DreamBoothTraining resumes from).'
            }
        }
    }
}
