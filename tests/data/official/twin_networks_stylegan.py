"""A synthetic twin of NVIDIA's StyleGAN1 `training/networks_stylegan.py`, written for these tests.

NVIDIA's file (NVlabs/stylegan and NVlabs/stylegan2, CC BY-NC / Nvidia Source Code License-NC)
cannot be part of this project. The build-source reader (`training/official_source.py`) compares
a pickle's embedded source with the official file statement by statement; its tests need a module
of the same shape, so this one keeps the official file's *interface facts*: the top-level
function names, the build functions' parameter names, order and literal defaults (G_style,
G_mapping, G_synthesis, D_basic), a few helper signatures, and the two expressions that decide
from which resolution the up/down-sampling convolution is fused. Every body is our own and
deliberately simple; it is never imported or run (it only has to parse), so nothing here needs
TensorFlow to be correct.
"""

import dnnlib
import dnnlib.tflib as tflib
import numpy as np
import tensorflow as tf

# --- helpers ------------------------------------------------------------------------------------


def blur2d(x, f=[1, 2, 1], normalize=True):  # noqa: B006 (the official default is a list)
    k = np.outer(f, f).astype(np.float32)
    if normalize:
        k = k / k.sum()
    return tf.nn.depthwise_conv2d(x, k[:, :, None, None], [1, 1, 1, 1], 'SAME')


def upscale2d(x, factor=2):
    return tf.image.resize(x, [x.shape[2] * factor, x.shape[3] * factor], method='nearest')


def downscale2d(x, factor=2):
    return tf.nn.avg_pool2d(x, factor, factor, 'VALID', data_format='NCHW')


def get_weight(shape, gain=np.sqrt(2), use_wscale=False, lrmul=1):  # noqa: B008 (the official default is a call)
    scale = gain / np.sqrt(np.prod(shape[:-1]))
    coef = scale * lrmul if use_wscale else lrmul
    return tf.get_variable('weight', shape=shape) * coef


def dense(x, fmaps, **kwargs):
    flat = tf.reshape(x, [tf.shape(x)[0], -1])
    return tf.matmul(flat, get_weight([flat.shape[1], fmaps], **kwargs))


def conv2d(x, fmaps, kernel, **kwargs):
    w = get_weight([kernel, kernel, x.shape[1], fmaps], **kwargs)
    return tf.nn.conv2d(x, w, 1, 'SAME', data_format='NCHW')


def upscale2d_conv2d(x, fmaps, kernel, fused_scale='auto', **kwargs):
    if fused_scale == 'auto':
        fused_scale = min(x.shape[2:]) * 2 >= 128
    if not fused_scale:
        return conv2d(upscale2d(x), fmaps, kernel, **kwargs)
    w = get_weight([kernel, kernel, fmaps, x.shape[1]], **kwargs)
    return tf.nn.conv2d_transpose(x, w, [x.shape[0], fmaps, x.shape[2] * 2, x.shape[3] * 2], 2, data_format='NCHW')


def conv2d_downscale2d(x, fmaps, kernel, fused_scale='auto', **kwargs):
    if fused_scale == 'auto':
        fused_scale = min(x.shape[2:]) >= 128
    if not fused_scale:
        return downscale2d(conv2d(x, fmaps, kernel, **kwargs))
    w = get_weight([kernel, kernel, x.shape[1], fmaps], **kwargs)
    return tf.nn.conv2d(x, w * 0.25, 2, 'SAME', data_format='NCHW')


def apply_bias(x, lrmul=1):
    return x + tf.get_variable('bias', shape=[x.shape[1]]) * lrmul


def leaky_relu(x, alpha=0.2):
    return tf.maximum(x, x * alpha)


def pixel_norm(x, epsilon=1e-8):
    return x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=1, keepdims=True) + epsilon)


def instance_norm(x, epsilon=1e-8):
    x = x - tf.reduce_mean(x, axis=[2, 3], keepdims=True)
    return x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=[2, 3], keepdims=True) + epsilon)


def style_mod(x, dlatent, **kwargs):
    s = apply_bias(dense(dlatent, fmaps=x.shape[1] * 2, **kwargs))
    return x * (s[:, 0::2, None, None] + 1) + s[:, 1::2, None, None]


def apply_noise(x, noise_var=None, randomize_noise=True):
    noise = tf.random.normal([tf.shape(x)[0], 1, x.shape[2], x.shape[3]]) if randomize_noise else noise_var
    return x + noise * tf.get_variable('noise_strength', shape=[])


def minibatch_stddev_layer(x, group_size=4, num_new_features=1):
    y = tf.math.reduce_std(tf.reshape(x, [group_size, -1, num_new_features, x.shape[1], x.shape[2], x.shape[3]]), 0)
    y = tf.tile(tf.reduce_mean(y, axis=[2, 3, 4], keepdims=True)[:, :, 0], [group_size, 1, x.shape[2], x.shape[3]])
    return tf.concat([x, y], axis=1)


# --- the networks -------------------------------------------------------------------------------


def G_style(
    latents_in,
    labels_in,
    truncation_psi=0.7,
    truncation_cutoff=8,
    truncation_psi_val=None,
    truncation_cutoff_val=None,
    dlatent_avg_beta=0.995,
    style_mixing_prob=0.9,
    is_training=False,
    is_validation=False,
    is_template_graph=False,
    components=dnnlib.EasyDict(),  # noqa: B008 (the official default is a call)
    **kwargs,
):
    if is_training or is_validation:
        truncation_psi = None
    if 'mapping' not in components:
        components.mapping = tflib.Network('G_mapping', func_name=G_mapping, **kwargs)
    if 'synthesis' not in components:
        components.synthesis = tflib.Network('G_synthesis', func_name=G_synthesis, **kwargs)
    dlatents = components.mapping.get_output_for(latents_in, labels_in, **kwargs)
    if truncation_psi is not None and truncation_cutoff is not None:
        avg = tf.get_variable('dlatent_avg', shape=[dlatents.shape[2]])
        layer = np.arange(dlatents.shape[1])[None, :, None]
        coefs = tf.where(layer < truncation_cutoff, truncation_psi, 1.0)
        dlatents = avg + (dlatents - avg) * coefs
    images = components.synthesis.get_output_for(dlatents, **kwargs)
    return tf.identity(images, name='images_out')


def G_mapping(
    latents_in,
    labels_in,
    latent_size=512,
    label_size=0,
    dlatent_size=512,
    dlatent_broadcast=None,
    mapping_layers=8,
    mapping_fmaps=512,
    mapping_lrmul=0.01,
    mapping_nonlinearity='lrelu',
    use_wscale=True,
    normalize_latents=True,
    dtype='float32',
    **_kwargs,
):
    act = {'relu': tf.nn.relu, 'lrelu': leaky_relu}[mapping_nonlinearity]
    x = latents_in
    if label_size:
        embed = tf.get_variable('weight', shape=[label_size, latent_size])
        x = tf.concat([x, tf.matmul(labels_in, embed)], axis=1)
    if normalize_latents:
        x = pixel_norm(x)
    for i in range(mapping_layers):
        width = dlatent_size if i == mapping_layers - 1 else mapping_fmaps
        x = act(apply_bias(dense(x, width, use_wscale=use_wscale, lrmul=mapping_lrmul), lrmul=mapping_lrmul))
    if dlatent_broadcast is not None:
        x = tf.tile(x[:, None], [1, dlatent_broadcast, 1])
    return tf.identity(tf.cast(x, dtype), name='dlatents_out')


def G_synthesis(
    dlatents_in,
    dlatent_size=512,
    num_channels=3,
    resolution=1024,
    fmap_base=8192,
    fmap_decay=1.0,
    fmap_max=512,
    use_styles=True,
    const_input_layer=True,
    use_noise=True,
    randomize_noise=True,
    nonlinearity='lrelu',
    use_wscale=True,
    use_pixel_norm=False,
    use_instance_norm=True,
    dtype='float32',
    fused_scale='auto',
    blur_filter=[1, 2, 1],  # noqa: B006 (the official default is a list)
    structure='auto',
    is_template_graph=False,
    force_clean_graph=False,
    **_kwargs,
):
    top = int(np.log2(resolution))
    act = {'relu': tf.nn.relu, 'lrelu': leaky_relu}[nonlinearity]

    def nf(stage):
        return min(int(fmap_base / (2.0 ** (stage * fmap_decay))), fmap_max)

    def epilogue(x, idx):
        if use_noise:
            x = apply_noise(x, randomize_noise=randomize_noise)
        x = act(apply_bias(x))
        if use_pixel_norm:
            x = pixel_norm(x)
        if use_instance_norm:
            x = instance_norm(x)
        if use_styles:
            x = style_mod(x, dlatents_in[:, idx], use_wscale=use_wscale)
        return x

    def block(res, x):
        x = upscale2d_conv2d(x, nf(res - 1), 3, fused_scale=fused_scale, use_wscale=use_wscale)
        if blur_filter:
            x = blur2d(x, blur_filter)
        x = epilogue(x, res * 2 - 4)
        return epilogue(conv2d(x, nf(res - 1), 3, use_wscale=use_wscale), res * 2 - 3)

    def torgb(x):
        return apply_bias(conv2d(x, num_channels, 1, gain=1, use_wscale=use_wscale))

    if const_input_layer:
        x = tf.tile(tf.get_variable('const', shape=[1, nf(1), 4, 4]), [tf.shape(dlatents_in)[0], 1, 1, 1])
    else:
        x = tf.reshape(dense(dlatents_in[:, 0], nf(1) * 16, use_wscale=use_wscale), [-1, nf(1), 4, 4])
    x = epilogue(x, 0)
    x = epilogue(conv2d(x, nf(1), 3, use_wscale=use_wscale), 1)
    for res in range(3, top + 1):
        x = block(res, x)
    return tf.identity(tf.cast(torgb(x), dtype), name='images_out')


def D_basic(
    images_in,
    labels_in,
    num_channels=1,
    resolution=32,
    label_size=0,
    fmap_base=8192,
    fmap_decay=1.0,
    fmap_max=512,
    nonlinearity='lrelu',
    use_wscale=True,
    mbstd_group_size=4,
    mbstd_num_features=1,
    dtype='float32',
    fused_scale='auto',
    blur_filter=[1, 2, 1],  # noqa: B006 (the official default is a list)
    structure='auto',
    is_template_graph=False,
    **_kwargs,
):
    top = int(np.log2(resolution))
    act = {'relu': tf.nn.relu, 'lrelu': leaky_relu}[nonlinearity]

    def nf(stage):
        return min(int(fmap_base / (2.0 ** (stage * fmap_decay))), fmap_max)

    x = act(apply_bias(conv2d(tf.cast(images_in, dtype), nf(top - 1), 1, use_wscale=use_wscale)))
    for res in range(top, 2, -1):
        x = act(apply_bias(conv2d(x, nf(res - 1), 3, use_wscale=use_wscale)))
        if blur_filter:
            x = blur2d(x, blur_filter)
        x = act(apply_bias(conv2d_downscale2d(x, nf(res - 2), 3, fused_scale=fused_scale, use_wscale=use_wscale)))
    if mbstd_group_size > 1:
        x = minibatch_stddev_layer(x, mbstd_group_size, mbstd_num_features)
    x = act(apply_bias(conv2d(x, nf(1), 3, use_wscale=use_wscale)))
    x = act(apply_bias(dense(x, nf(0), use_wscale=use_wscale)))
    scores = apply_bias(dense(x, max(label_size, 1), gain=1, use_wscale=use_wscale))
    if label_size:
        scores = tf.reduce_sum(scores * labels_in, axis=1, keepdims=True)
    return tf.identity(scores, name='scores_out')
