"""How long zcserve's event loop ran between sleeps, and what the CPU
sampler saw inside its long runs.

Record CPU 0 during a cold run, then:
  perf record -e sched:sched_switch -e cpu-clock -F 4999 -g -C 0 -o p.data
  perf script -i p.data -F comm,tid,time,event,ip,sym,trace > ps.txt
  python3 loop-runs.py ps.txt [threshold_seconds, default 0.0005]

The loop is the `zcserve` thread with the most samples. A run is the time
from its switch-in to its switch-out. For runs longer than the threshold
it counts the samples taken inside them by syscall (and first zcserve
frame), next to the same count over all runs (third column).
"""
import re,sys,collections
txt=open(sys.argv[1]).read().split('\n\n')
events=[]
for blk in txt:
    lines=blk.strip().split('\n')
    if not lines or not lines[0]: continue
    h=lines[0]
    m=re.match(r'\s*(\S.*?)\s+(\d+)\s+([\d.]+):\s+(\S+):\s*(.*)',h)
    if not m: continue
    comm,tid,t,ev,rest=m.groups(); t=float(t); tid=int(tid)
    if ev.startswith('sched:sched_switch'):
        mm=re.search(r'prev_pid=(\d+).*next_comm=(.*) next_pid=(\d+)',rest)
        events.append(('sw',t,int(mm.group(1)),int(mm.group(3)),mm.group(2)))
    else:
        frames=[l.strip().split(None,1)[1] if len(l.strip().split(None,1))>1 else '?' for l in lines[1:]]
        events.append(('s',t,tid,comm,frames))
# loop tid: comm zcserve with most samples
c=collections.Counter(e[2] for e in events if e[0]=='s' and e[3]=='zcserve')
loop=c.most_common(1)[0][0]; print('loop',loop)
runs=[];start=None
for e in events:
    if e[0]=='sw':
        if e[3]==loop: start=e[1]
        elif e[2]==loop and start is not None: runs.append((start,e[1])); start=None
d=sorted(b-a for a,b in runs)
q=lambda x:d[int(x*(len(d)-1))]*1e3
print('runs',len(runs),'p50 %.3f p90 %.3f p99 %.3f p999 %.3f max %.3f ms'%(q(.5),q(.9),q(.99),q(.999),d[-1]*1e3))
thr=float(sys.argv[2]) if len(sys.argv)>2 else 0.5e-3
long=[(a,b) for a,b in runs if b-a>thr]
print('long runs',len(long),'total %.1f ms of %.1f'%(sum(b-a for a,b in long)*1e3,sum(d)*1e3))
import bisect
samp=[e for e in events if e[0]=='s' and e[2]==loop]
ts=[e[1] for e in samp]
sig=collections.Counter(); sigall=collections.Counter()
def signature(fr):
    # first user frame and first syscall
    sc=next((f for f in fr if f.startswith('__x64_sys_') or f.startswith('__do_sys')),'-')
    us=next((f for f in fr if not f.startswith(('_','do_','entry','syscall')) and '::' in f),'-')
    return sc+' | '+us[:70]
for e in samp: sigall[signature(e[4])]+=1
for a,b in long:
    i=bisect.bisect_left(ts,a); j=bisect.bisect_right(ts,b)
    for e in samp[i:j]: sig[signature(e[4])]+=1
n=sum(sig.values()); print('samples in long runs',n,'of',len(samp))
for k,v in sig.most_common(25): print('%5d %5.1f%% %5d  %s'%(v,100*v/n,sigall[k],k))
