import { router } from '../../trpc/init';
import { collectorStatus } from './collector-status';

export const liveRouter = router({ collectorStatus });
