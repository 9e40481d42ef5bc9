with

orders as (

    select * from {{ ref('core', 'orders') }}

),

customers as (

    select * from {{ ref('core', 'customers') }}

),

final as (

    select
        cast(date_trunc('month', orders.order_date) as date) as revenue_month,
        customers.country,
        sum(orders.amount) as revenue

    from orders

    inner join customers
        on orders.customer_id = customers.customer_id

    where orders.status = 'completed'

    group by 1, 2

)

select * from final
