import { router } from '../../trpc/init';
import { list } from './list';
import { assign } from './assign';
import { unassign } from './unassign';
import { assignToGroup } from './assign-to-group';
import { unassignFromGroup } from './unassign-from-group';

export const dashboardsRouter = router({ list, assign, unassign, assignToGroup, unassignFromGroup });
