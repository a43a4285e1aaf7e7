"""mmpose 1.3.2 reference outputs for tests/test_codecs.py -> codec_reference.npz.

Run with an interpreter that has mmpose 1.3.2. Inputs come from ``np.random.default_rng(1)`` in a
fixed order, which the test replays. mmpose's UDP decoder returns ``x_hm / (W_hm - 1) * W_in``
(it compensates in its back-projection); the stored UDP keypoints are rescaled to true input
pixels, ``x_hm * (W_in - 1) / (W_hm - 1)``, which is what harness's codec returns.
"""
from pathlib import Path
import numpy as np, torch
from mmpose.codecs import MSRAHeatmap, UDPHeatmap
from mmpose.structures.bbox import get_warp_matrix, get_udp_warp_matrix
import importlib.util, sys
import mmpose
# mmpose.models imports mmdet at package level; load the one module we need directly
spec=importlib.util.spec_from_file_location("tta", Path(mmpose.__file__).parent / "models" / "utils" / "tta.py"); tta=importlib.util.module_from_spec(spec); spec.loader.exec_module(tta); flip_heatmaps=tta.flip_heatmaps
rng=np.random.default_rng(1)
out={}
kps=rng.uniform(-20,210,(50,1,17,2)).astype(np.float32); kps[:5,0,:,0]*=1.2
vis=(rng.uniform(0,1,(50,1,17))>0.2).astype(np.float32)
out['kps']=kps; out['vis']=vis
for name,c in [('msra',MSRAHeatmap(input_size=(192,256),heatmap_size=(48,64),sigma=2)),
               ('dark',MSRAHeatmap(input_size=(192,256),heatmap_size=(48,64),sigma=2,unbiased=True)),
               ('udp',UDPHeatmap(input_size=(192,256),heatmap_size=(48,64),sigma=2)),
               ('msra3',MSRAHeatmap(input_size=(288,384),heatmap_size=(72,96),sigma=3))]:
    enc=[c.encode(k*(1.5 if name=='msra3' else 1),v) for k,v in zip(kps,vis)]
    out[name+'_hm']=np.stack([e['heatmaps'] for e in enc]); out[name+'_w']=np.stack([e['keypoint_weights'] for e in enc])
    # decode on noisy heatmaps
    hm=out[name+'_hm']+rng.uniform(0,0.05,out[name+'_hm'].shape).astype(np.float32)
    out[name+'_dec_in']=hm
    dec=[c.decode(h) for h in hm]
    out[name+'_dec_kp']=np.stack([d[0] for d in dec]); out[name+'_dec_sc']=np.stack([d[1] for d in dec])
mats=[]; params=[]
for i in range(20):
    c=rng.uniform(0,600,2); s=rng.uniform(50,500,2); r=rng.uniform(-80,80)
    params.append((c,s,r)); mats.append((get_warp_matrix(c,s,r,(192,256)), get_udp_warp_matrix(c,s,r,(192,256))))
out['warp_params']=params; out['warp_mats']=mats
h=torch.from_numpy(rng.uniform(0,1,(2,17,64,48)).astype(np.float32))
out['flip_in']=h.numpy(); out['flip_out']=flip_heatmaps(h.clone(),flip_indices=[0,2,1,4,3,6,5,8,7,10,9,12,11,14,13,16,15],shift_heatmap=True).numpy()
o = out
ref = {}
for name in ['msra', 'dark', 'udp', 'msra3']:
    ref[name + '_w'] = o[name + '_w'][:, 0].astype(np.float32)
    ref[name + '_hmsum'] = o[name + '_hm'].sum(axis=(2, 3)).astype(np.float64)
    ref[name + '_hmargmax'] = o[name + '_hm'].reshape(50, 17, -1).argmax(-1).astype(np.int32)
    kp = o[name + '_dec_kp'][:, 0]
    if name == 'udp':
        kp = kp * np.array([191 / 192, 255 / 256])
    ref[name + '_deckp'] = kp.astype(np.float64)
    ref[name + '_decsc'] = o[name + '_dec_sc'][:, 0].astype(np.float32)
ref['warp_c'] = np.array([p[0] for p in o['warp_params']])
ref['warp_s'] = np.array([p[1] for p in o['warp_params']])
ref['warp_r'] = np.array([p[2] for p in o['warp_params']])
ref['warp_m'] = np.array([m[0] for m in o['warp_mats']])
ref['warp_udp'] = np.array([m[1] for m in o['warp_mats']])
np.savez_compressed(Path(__file__).resolve().parent / 'codec_reference.npz', **ref)
